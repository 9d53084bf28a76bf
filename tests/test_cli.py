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
    with pytest.raises(SystemExit) as info:
        cli.main(["find", str(tmp_path / "raw.keras"), str(data_path)])
    assert info.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert line.startswith("keras-lr find: error: ") and "no compiled model" in line


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "keras_lr", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "demo" in proc.stdout


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "keras_lr", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_usage_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]


def test_missing_files_are_usage_errors(tmp_path):
    proc = _cli("find", str(tmp_path / "nope.keras"), str(tmp_path / "nope.npz"))
    _assert_usage_error(proc, "keras-lr find: error: model file not found: ")
    model = tmp_path / "model.keras"
    model.write_bytes(b"not a model")
    proc = _cli("find", str(model), str(tmp_path / "nope.npz"))
    _assert_usage_error(proc, "keras-lr find: error: data file not found: ")
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 28, 28)), y=np.zeros(4))
    proc = _cli("find", str(model), str(tmp_path / "data.npz"))
    _assert_usage_error(proc, "keras-lr find: error: cannot load the model ")
    # Not Keras's "File not found" for a file that is there.
    _assert_usage_error(proc, "it is not a .keras archive")
    assert "not found" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--steps", "0"], "argument --steps: must be >= 10, got 0"),
        (["demo", "--batch-size", "-1"], "argument --batch-size: must be >= 1"),
        (["demo", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
        (["find", "m.keras", "d.npz", "--steps", "5"], "argument --steps: must be"),
        (["find", "m.keras", "d.npz", "--batch-size", "-1"], "--batch-size: must"),
        (["demo", "--steps", "1" + "0" * 20], "argument --steps: must be <= 1000000"),
        (["demo", "--start-lr", "0"], "argument --start-lr: must be a finite number"),
        (["demo", "--start-lr", "nan"], "argument --start-lr: must be a finite"),
        (["demo", "--end-lr", "inf"], "argument --end-lr: must be a finite number"),
        (["find", "m.keras", "d.npz", "--end-lr", "x"], "must be a number, got 'x'"),
        (
            ["demo", "--start-lr", "1", "--end-lr", "0.1"],
            "argument --end-lr: must be > --start-lr. "
            "Received: --start-lr=1, --end-lr=0.1",
        ),
        (["find", "m.keras", "d.npz", "--start-lr", "1", "--end-lr", "1"], "must be >"),
    ],
)
def test_bad_numbers_are_rejected_up_front(args, message, capsys):
    # Before any model is built or file read: argparse's exit status 2.
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_numbers_from_the_shell():
    proc = _cli("demo", "--steps", "0", "--quiet", "--output", "unused.png")
    _assert_usage_error(proc, "keras-lr demo: error: argument --steps: must be >= 10")
    proc = _cli("demo", "--batch-size", "x1")
    _assert_usage_error(proc, "argument --batch-size: must be an integer, got 'x1'")


def _npz_bytes(tmp_path) -> bytes:
    path = tmp_path / "whole.npz"
    np.savez(path, x=np.zeros((64, 28, 28), "uint8"), y=np.zeros(64, "uint8"))
    return path.read_bytes()


def test_unreadable_data_is_a_usage_error(tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    cli.build_demo_model().save(model_path)
    for name, write in (
        ("one.npy", lambda p: np.save(p, np.zeros((4, 28, 28)))),
        ("keys.npz", lambda p: np.savez(p, a=np.zeros(4), b=np.zeros(4))),
        ("text.npz", lambda p: p.write_text("not an archive")),
        # A truncated download: zipfile's BadZipFile, not an OSError.
        ("cut.npz", lambda p: p.write_bytes(_npz_bytes(tmp_path)[:300])),
    ):
        path = tmp_path / name
        write(path)
        with pytest.raises(SystemExit) as info:
            cli.main(["find", str(model_path), str(path), "--quiet"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"keras-lr find: error: cannot read the data {path}" in err
        # Not numpy's advice to unpickle a file that is no .npz.
        assert "pickle" not in err
        if name in ("text.npz", "cut.npz"):
            assert "it is not an .npz archive" in err


def test_output_in_a_missing_folder_is_a_usage_error_before_training(
    tmp_path, capsys, monkeypatch
):
    ran = []
    monkeypatch.setattr(cli, "_demo", lambda args: ran.append(args) or 0)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--output", str(tmp_path / "missing" / "lr.png")])
    assert exit_info.value.code == 2
    assert "the folder of --output does not exist" in capsys.readouterr().err
    assert ran == []  # refused before the range test


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "--output must name a file"),
        ("a_folder", "--output is a folder"),
        ("lr.jpgg", "matplotlib cannot write .jpgg files"),
    ],
)
def test_unusable_output_is_a_usage_error_before_training(
    tmp_path, capsys, monkeypatch, name, message
):
    ran = []
    monkeypatch.setattr(cli, "_demo", lambda args: ran.append(args) or 0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_folder").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--output", name])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert ran == []


def test_output_that_cannot_be_written_is_a_usage_error_before_training(
    tmp_path, capsys, monkeypatch
):
    ran = []
    monkeypatch.setattr(cli, "_demo", lambda args: ran.append(args) or 0)
    # The folder exists, but no file of that name can be created in it.
    too_long = str(tmp_path / ("x" * 300 + ".png"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--output", too_long])
    assert exit_info.value.code == 2
    assert f"cannot write --output {too_long}" in capsys.readouterr().err
    assert ran == []
    # The probe leaves no file behind, and an existing plot as it was.
    assert cli.main(["demo", "--output", str(tmp_path / "new.png")]) == 0
    assert not (tmp_path / "new.png").exists()
    (tmp_path / "old.png").write_bytes(b"old plot")
    assert cli.main(["demo", "--output", str(tmp_path / "old.png")]) == 0
    assert (tmp_path / "old.png").read_bytes() == b"old plot"


def test_sweep_bounds_reach_the_range_test_and_short_sweeps_warn(tmp_path, capsys):
    out = tmp_path / "short.png"
    args = ["demo", "--steps", "12", "--start-lr", "1e-4", "--end-lr", "1"]
    assert cli.main([*args, "--output", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "Range test: 12 steps, lr 0.0001 -> 1," in captured.out
    assert "keras-lr demo: warning: --steps 12 gives fewer than 20 points" in (
        captured.err
    )
    assert out.exists()


@pytest.mark.multibackend
@pytest.mark.parametrize(
    "labels", [np.full(64, 42), np.full(64, -1), np.full(64, 10.0)]
)
def test_labels_out_of_range_are_a_usage_error(tmp_path, capsys, labels):
    # Refused before training, on every backend (JAX would train on: its
    # gathers clip out-of-range indices).
    model_path = tmp_path / "model.keras"
    cli.build_demo_model().save(model_path)
    data_path = tmp_path / "data.npz"
    np.savez(data_path, x=np.zeros((64, 28, 28), "uint8"), y=labels)
    out = tmp_path / "lr.png"
    with pytest.raises(SystemExit) as info:
        cli.main(["find", str(model_path), str(data_path), "--quiet", "--output",
                  str(out)])  # fmt: skip
    assert info.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    value = int(labels[0])
    assert (
        f"keras-lr find: error: the labels of {data_path} range from {value} " in line
    )
    assert "10 output units: class labels must lie in 0..9" in line
    assert not out.exists()
    # A loss's `ignore_class` label is no class.
    model = cli.build_demo_model()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(ignore_class=-1))
    y = np.array([0, 9, -1])
    assert cli._label_range_error(model, y) is None
    assert "range from -1 to 9" in cli._label_range_error(cli.build_demo_model(), y)
    # Labels in range, as floats of integer value: no complaint.
    np.savez(data_path, x=np.zeros((64, 28, 28), "uint8"), y=np.arange(64) % 10.0)
    assert cli._label_range_error(keras.models.load_model(model_path),
                                  np.arange(64) % 10.0) is None  # fmt: skip


def test_output_without_an_extension_is_written_as_png(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_demo", lambda args: seen.append(args.output) or 0)
    assert cli.main(["demo", "--output", str(tmp_path / "plot")]) == 0
    assert seen == [str(tmp_path / "plot") + ".png"]


def test_data_that_does_not_fit_the_model_is_a_usage_error(tmp_path, capsys):
    model_path = tmp_path / "model.keras"
    cli.build_demo_model().save(model_path)
    data_path = tmp_path / "data.npz"
    # Three channels for a model of grey images.
    x = np.zeros((64, 28, 28, 3), "float32")
    np.savez(data_path, x=x, y=np.zeros(64, "int32"))
    out = str(tmp_path / "lr.png")
    with pytest.raises(SystemExit) as info:
        cli.main(["find", str(model_path), str(data_path), "--quiet", "--output", out])
    assert info.value.code == 2
    # One line, Keras's own message without its frame, escape codes and the
    # "Arguments received" that follow it.
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert line.startswith("keras-lr find: error: the range test of"), err
    assert "expected axis -1 of input shape to have value 1" in line, err
    assert "\x1b" not in err and "Arguments received" not in err, err
    assert err.rstrip("\n").endswith(line), err


def test_error_messages_are_one_line_without_keras_frames():
    inner = (
        "Exception encountered when calling Conv2D.call().\n\n"
        "\x1b[1mexpected axis -1 to be 1\x1b[0m\n\n"
        "Arguments received by Conv2D.call():\n  • inputs=..."
    )
    outer = (
        "Exception encountered when calling Sequential.call().\n\n"
        f"\x1b[1m{inner}\x1b[0m\n\nArguments received by Sequential.call():\n"
    )
    assert cli._message(ValueError(outer)) == "expected axis -1 to be 1"
    assert cli._message(ValueError(inner)) == "expected axis -1 to be 1"
    cardinality = "Data cardinality is ambiguous.\n'x' sizes: 5\n'y' sizes: 4\n"
    assert cli._message(ValueError(cardinality)) == (
        "Data cardinality is ambiguous. 'x' sizes: 5 'y' sizes: 4"
    )
    graph = (
        "Graph execution error:\n\nDetected at node loss/Sparse defined at "
        '(most recent call last):\n  File "x.py", line 1\n\nReceived a '
        "label value of 42 which is outside the valid range of [0, 10).\n\t "
        "[[{{node loss/Sparse}}]] [Op:__inference_train]"
    )
    assert cli._message(ValueError(graph)) == (
        "Received a label value of 42 which is outside the valid range of [0, 10)."
    )


def test_a_curve_too_short_for_a_range_still_reports(tmp_path, capsys):
    from keras_lr.range_test.result import LRRangeTestResult

    result = LRRangeTestResult(
        lrs=np.array([1e-3, 1e-2]), losses=np.array([1.0, 0.9]), smoothing=0.0
    )
    cli._report(result, str(tmp_path / "short.png"), 0.0)
    printed = capsys.readouterr().out
    assert "Range for cyclical / 1cycle schedules: -" in printed
    assert (tmp_path / "short.png").exists()


@pytest.mark.parametrize("where", ["images", "labels"])
def test_non_finite_data_is_a_usage_error_before_training(
    tmp_path, capsys, monkeypatch, where
):
    # A NaN pixel cut the sweep at its batch, and the report advised to
    # "start the sweep lower"; it is refused up front instead.
    model_path = tmp_path / "model.keras"
    cli.build_demo_model().save(model_path)
    x = np.full((64, 28, 28), 0.5, "float32")
    y = np.arange(64, dtype="float32") % 10
    if where == "images":
        x[3, 4, 5] = np.nan
    else:
        y[3] = np.inf
    data_path = tmp_path / "data.npz"
    np.savez(data_path, x=x, y=y)
    import keras_lr

    ran = []
    monkeypatch.setattr(keras_lr, "lr_range_test", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit) as info:
        cli.main(["find", str(model_path), str(data_path), "--quiet", "--output",
                  str(tmp_path / "lr.png")])  # fmt: skip
    assert info.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert line == (
        f"keras-lr find: error: the {where} of {data_path} hold 1 value(s) that "
        "are not finite (NaN or Inf)"
    )
    assert ran == []


def test_a_backend_that_cannot_train_is_a_usage_error(capsys, monkeypatch):
    # KERAS_BACKEND=numpy: a traceback ending in Keras's "fit not implemented
    # for NumPy backend" after the model was built.
    ran = []
    monkeypatch.setattr(cli, "_demo", lambda args: ran.append(args) or 0)
    monkeypatch.setattr(keras.backend, "backend", lambda: "numpy")
    with pytest.raises(SystemExit) as info:
        cli.main(["demo"])
    assert info.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert line == (
        "keras-lr demo: error: the numpy backend of Keras cannot train: set "
        "KERAS_BACKEND to one of tensorflow, jax, torch"
    )
    assert ran == []


def test_notes_name_the_options_of_the_command(tmp_path, capsys):
    # The notes said "raise end_lr or num_steps": arguments of
    # lr_range_test, not options of the command (--end-lr, --steps).
    from keras_lr.range_test.result import LRRangeTestResult

    lrs = np.geomspace(1e-7, 10.0, 100)
    losses = 2.3 - 0.1 * np.arange(100) / 100  # falls to the end
    result = LRRangeTestResult(lrs=lrs, losses=losses, params={"end_lr": 10.0})
    assert any("end_lr" in finding for finding in result.diagnostics())
    cli._report(result, str(tmp_path / "notes.png"), 0.0)
    notes = [ln for ln in capsys.readouterr().out.splitlines() if "Note:" in ln]
    assert any("raise --end-lr or --steps" in note for note in notes), notes
    assert not any("end_lr" in note or "num_steps" in note for note in notes), notes
