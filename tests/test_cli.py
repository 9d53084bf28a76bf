"""The command line: `keras-lr demo` and `keras-lr find` end to end."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_lr import cli

pytestmark = pytest.mark.slow


def test_demo_runs_on_the_embedded_data(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert cli.main(["demo", "--steps", "40", "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Fashion-MNIST" in printed and "keras_lr's suggestion" in printed
    assert out.stat().st_size > 5000


def test_find_on_a_saved_model(tmp_path, capsys, fashion_sample):
    (x, y), _ = fashion_sample
    model = cli.build_demo_model()
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    data_path = tmp_path / "data.npz"
    np.savez(data_path, x=(x[:512, ..., 0] * 255).astype("uint8"), y=y[:512])
    out = tmp_path / "find.png"
    code = cli.main(
        [
            "find",
            str(model_path),
            str(data_path),
            "--steps",
            "30",
            "--output",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0 and out.exists()
    assert "Suggestions:" in capsys.readouterr().out
    uncompiled = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    uncompiled.save(tmp_path / "raw.keras")
    assert cli.main(["find", str(tmp_path / "raw.keras"), str(data_path)]) == 2


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "keras_lr", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "demo" in proc.stdout
