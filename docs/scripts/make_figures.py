"""Writes the figures of docs/guides/range-test.md from real range tests.

Each figure comes from a real run of `keras_lr.lr_range_test` on the
Fashion-MNIST images embedded in the package (the CLI demo's CNN, SGD with
momentum). Run from the repository root:

    KERAS_BACKEND=tensorflow python docs/scripts/make_figures.py

It takes about a minute on a 2-core CPU and writes PNGs into docs/img/.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_lr
from keras_lr.cli import build_demo_model
from keras_lr.data import load_fashion_mnist_sample

OUT = Path(__file__).resolve().parents[1] / "img"


def _data():
    (x, y), _ = load_fashion_mnist_sample()
    return (x[..., None] / np.float32(255.0)).astype("float32"), y


def _save(fig, name: str) -> None:
    path = OUT / name
    fig.savefig(path, dpi=80)
    print(f"{path.relative_to(OUT.parents[1])}: {path.stat().st_size // 1024} KB")


def _summary(label: str, result) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rules = {m: result.suggestion(m, warn=False) for m in keras_lr.suggest.RULES}
    text = ", ".join(f"{m} {lr:.2g}" for m, lr in rules.items())
    print(f"{label}: {len(result)} steps, diverged={result.diverged}; {text}")
    print(f"  suggest_range: {tuple(round(v, 5) for v in result.suggest_range())}")
    for finding in result.diagnostics():
        print(f"  diagnostic: {finding}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    x, y = _data()

    # 1. A full sweep, 1e-7 -> 100, that ends in divergence.
    result = keras_lr.lr_range_test(
        build_demo_model(), x, y, batch_size=64, end_lr=100.0, num_steps=160, verbose=0
    )
    _summary("full sweep", result)
    fig = result.plot()
    ax = fig.axes[0]
    low, high = result.suggest_range()
    ax.axvspan(low, high, color="C2", alpha=0.12, label="suggest_range()")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Range test: demo CNN on Fashion-MNIST (SGD, momentum 0.9)")
    _save(fig, "range_test.png")

    # 2. Only the per-step loss, the EMA and the no-lag trend, zoomed in on the
    #    descent: the EMA lags to the right of the trend.
    fig = result.plot(methods=("default",))
    ax = fig.axes[0]
    ax.set_xlim(1e-4, result.lrs[-1])
    ax.set_title("The EMA (blue) lags the no-lag trend (red)")
    _save(fig, "smoothing_lag.png")

    # 3. A sweep stopped too early: no divergence, the diagnostics warn.
    short = keras_lr.lr_range_test(
        build_demo_model(), x, y, batch_size=64, end_lr=0.05, num_steps=80, verbose=0
    )
    _summary("short sweep", short)
    fig = short.plot()
    fig.axes[0].set_title("end_lr=0.05: the sweep never diverged (a warning)")
    _save(fig, "no_divergence.png")


if __name__ == "__main__":
    main()
