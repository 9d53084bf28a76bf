"""Agreement of `keras_lr.diagnose` with learning-rate grids of real runs.

One command::

    KERAS_BACKEND=tensorflow python benchmarks/diagnosis_accuracy.py

For each task, the model is trained from the same initial weights at every
rate of a log grid with 3 rates per decade. A run is labelled from the grid:
``good`` when its final validation accuracy is within 2 points of the
grid's best, otherwise ``too_high`` when its rate is above the best rate
and ``too_low`` when below. `diagnose` sees only the run's own `History`.
Reported: agreement over all runs, and the number of ``too_high`` verdicts
on runs the grid marks good (must be 0). The histories are written to
``benchmarks/results/diagnosis_runs.json`` (``--replay`` re-scores them
without training; ``--replay --no-accuracy`` scores `diagnose` on the
histories without their accuracy series, the labels unchanged).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

RUNS = ROOT / "benchmarks" / "results" / "diagnosis_runs.json"
#: The same grids trained again with another data order (`--replicate`).
REPLICATE = ROOT / "benchmarks" / "results" / "diagnosis_runs_replicate.json"


#: When each task was added. The rules were revised between rounds; each
#: round's tasks were trained (and scored) only after the revision before
#: them was fixed, so their first score was a held-out check of it.
ROUNDS = {
    "fashion_cnn_adam": "0 (development)",
    "fashion_mlp_sgd_momentum": "0 (development)",
    "digits_mlp_sgd": "0 (development)",
    "fashion_cnn_dropout_rmsprop": "0 (development)",
    "digits_mlp_adam_heldout": "1",
    "fashion_cnn_nesterov_heldout": "2",
    "digits_deep_mlp_adamw_heldout": "2",
    "fashion_cnn_bn_sgd_heldout": "3",
    "digits_cnn_adamax_heldout": "3",
    "fashion_mlp_nadam_b256_heldout": "3",
    "digits_tanh_mlp_rmsprop_heldout": "3",
    "fashion_cnn_dropout_adam_heldout2": "4",
    "digits_mlp_adagrad_heldout2": "4",
    "fashion_deep_mlp_sgd_heldout2": "4",
    "digits_deep_mlp_lion_heldout2": "4",
    "fashion_cnn_adamw_b128_heldout3": "5",
    "digits_deep_mlp_momentum_heldout3": "5",
    "fashion_mlp_rmsprop_heldout3": "5",
    "digits_cnn_nadam_heldout3": "5",
    "fashion_cnn_sgd_b256_heldout4": "6",
    "digits_mlp_nadam_b128_heldout4": "6",
    "fashion_cnn_bn_adam_heldout4": "6",
    "digits_deep_mlp_rmsprop_momentum_heldout4": "6",
    "fashion_bn_mlp_momentum_heldout5": "7",
    "digits_dropout_mlp_adam_heldout5": "7",
    "fashion_cnn_rmsprop_b32_heldout5": "7",
    "digits_bn_cnn_momentum_heldout5": "7",
    "fashion_cnn_dropout_momentum_heldout6": "8",
    "digits_mlp_rmsprop_b8_heldout6": "8",
    "fashion_bn_mlp_adam_b128_heldout6": "8",
    "digits_deep_mlp_adadelta_heldout6": "8",
    "fashion_tanh_mlp_adagrad_heldout7": "9",
    "digits_cnn_rmsprop_b64_heldout7": "9",
    "fashion_cnn_nadam_heldout7": "9",
    "digits_deep_mlp_nesterov_b16_heldout7": "9",
    "fashion_cnn_dropout_adamax_heldout8": "10",
    "digits_bn_cnn_adam_heldout8": "10",
    "fashion_ln_mlp_momentum_b128_heldout8": "10",
    "digits_tanh_mlp_sgd_b16_heldout8": "10",
    "fashion_ln_mlp_adamw_heldout9": "11",
    "digits_dropout_mlp_momentum_b16_heldout9": "11",
    "fashion_cnn_bn_rmsprop_b32_heldout9": "11",
    "digits_cnn_lion_heldout9": "11",
    "fashion_cnn_dropout_nadam_b128_heldout10": "12",
    "digits_tanh_mlp_adam_b8_heldout10": "12",
    "fashion_bn_mlp_rmsprop_heldout10": "12",
    "digits_deep_mlp_sgd_b64_heldout10": "12",
    "fashion_cnn_gap_adam_heldout11": "13",
    "digits_mlp_adamax_b16_heldout11": "13",
    "fashion_deep_mlp_adamw_heldout11": "13",
    "digits_dropout_mlp_rmsprop_heldout11": "13",
    "fashion_cnn_gap_nesterov_b32_heldout12": "14",
    "digits_bn_cnn_rmsprop_heldout12": "14",
    "fashion_tanh_mlp_nadam_b128_heldout12": "14",
    "digits_deep_mlp_adagrad_b16_heldout12": "14",
    "fashion_cnn_deep_adamw_b32_heldout13": "15",
    "digits_swish_mlp_nadam_heldout13": "15",
    "fashion_mlp_adamax_b32_heldout13": "15",
    "digits_cnn_momentum_b128_heldout13": "15",
    "fashion_cnn_bn_nadam_heldout14": "16",
    "digits_mlp_lion_b64_heldout14": "16",
    "fashion_ln_mlp_rmsprop_b128_heldout14": "16",
    "digits_elu_mlp_adamax_heldout14": "16",
    "fashion_cnn_wide_momentum_b128_heldout15": "17",
    "digits_selu_mlp_amsgrad_heldout15": "17",
    "fashion_dropout_mlp_nesterov_heldout15": "17",
    "digits_cnn_lamb_b16_heldout15": "17",
    "fashion_sep_cnn_adam_b32_heldout16": "18",
    "digits_deep_mlp_clipped_momentum_heldout16": "18",
    "fashion_cnn_adamw_1e-2_heldout16": "18",
    "digits_mlp_rmsprop_b256_heldout16": "18",
    "fashion_cnn_bn_momentum_b32_heldout17": "19",
    "digits_selu_mlp_rmsprop_b64_heldout17": "19",
    "fashion_cnn_wide_adam_b128_heldout17": "19",
    "digits_deep_mlp_lamb_heldout17": "19",
}


def grid(lo_exp: int, hi_exp: int) -> list[float]:
    """Rates 10**(k/3) from 10**lo_exp to 10**hi_exp inclusive."""
    return [float(10 ** (k / 3)) for k in range(3 * lo_exp, 3 * hi_exp + 1)]


#: The tasks: name, model, optimizer, data, epochs, batch, grid exponents.
#: Rows are in the order they were added (see `ROUNDS`).
TASKS = [
    ("fashion_cnn_adam", "cnn", "adam", "fm", 5, 64, (-5, 0)),
    ("fashion_mlp_sgd_momentum", "mlp_fm", "momentum", "fm", 5, 64, (-4, 1)),
    ("digits_mlp_sgd", "mlp_digits", "sgd", "dg", 20, 32, (-4, 1)),
    ("digits_mlp_adam_heldout", "mlp_digits", "adam", "dg", 10, 16, (-5, 0)),
    ("fashion_cnn_dropout_rmsprop", "cnn_dropout", "rmsprop", "fm", 4, 128, (-5, 0)),
    ("fashion_cnn_nesterov_heldout", "cnn", "nesterov", "fm", 3, 32, (-4, 1)),
    ("digits_deep_mlp_adamw_heldout", "mlp_digits_deep", "adamw_1e-4", "dg", 15, 64,
     (-5, 0)),
    ("fashion_cnn_bn_sgd_heldout", "cnn_bn", "sgd", "fm", 4, 64, (-4, 1)),
    ("digits_cnn_adamax_heldout", "cnn_digits", "adamax", "dg", 12, 32, (-5, 0)),
    ("fashion_mlp_nadam_b256_heldout", "mlp_fm_deep", "nadam", "fm", 6, 256, (-5, 0)),
    ("digits_tanh_mlp_rmsprop_heldout", "mlp_digits_tanh", "rmsprop", "dg", 15, 32,
     (-5, 0)),
    ("fashion_cnn_dropout_adam_heldout2", "cnn_dropout", "adam", "fm", 3, 32, (-5, 0)),
    ("digits_mlp_adagrad_heldout2", "mlp_digits", "adagrad", "dg", 20, 64, (-4, 1)),
    ("fashion_deep_mlp_sgd_heldout2", "mlp_fm_deep", "sgd", "fm", 5, 32, (-4, 1)),
    ("digits_deep_mlp_lion_heldout2", "mlp_digits_deep", "lion", "dg", 10, 32, (-6, -1)),
    ("fashion_cnn_adamw_b128_heldout3", "cnn", "adamw_1e-3", "fm", 4, 128, (-5, 0)),
    ("digits_deep_mlp_momentum_heldout3", "mlp_digits_deep", "momentum", "dg", 10, 64,
     (-4, 1)),
    ("fashion_mlp_rmsprop_heldout3", "mlp_fm", "rmsprop", "fm", 4, 32, (-5, 0)),
    ("digits_cnn_nadam_heldout3", "cnn_digits", "nadam", "dg", 8, 16, (-5, 0)),
    ("fashion_cnn_sgd_b256_heldout4", "cnn", "sgd", "fm", 5, 256, (-3, 2)),
    ("digits_mlp_nadam_b128_heldout4", "mlp_digits", "nadam", "dg", 25, 128, (-5, 0)),
    ("fashion_cnn_bn_adam_heldout4", "cnn_bn", "adam", "fm", 3, 64, (-5, 0)),
    ("digits_deep_mlp_rmsprop_momentum_heldout4", "mlp_digits_deep",
     "rmsprop_momentum", "dg", 12, 32, (-6, -1)),
    ("fashion_bn_mlp_momentum_heldout5", "mlp_fm_bn", "momentum", "fm", 4, 64, (-4, 1)),
    ("digits_dropout_mlp_adam_heldout5", "mlp_digits_dropout", "adam", "dg", 15, 32,
     (-5, 0)),
    ("fashion_cnn_rmsprop_b32_heldout5", "cnn", "rmsprop", "fm", 3, 32, (-5, 0)),
    ("digits_bn_cnn_momentum_heldout5", "cnn_digits_bn", "momentum", "dg", 10, 32,
     (-4, 1)),
    ("fashion_cnn_dropout_momentum_heldout6", "cnn_dropout", "momentum", "fm", 4, 64,
     (-4, 1)),
    ("digits_mlp_rmsprop_b8_heldout6", "mlp_digits", "rmsprop", "dg", 6, 8, (-5, 0)),
    ("fashion_bn_mlp_adam_b128_heldout6", "mlp_fm_bn", "adam", "fm", 3, 128, (-5, 0)),
    ("digits_deep_mlp_adadelta_heldout6", "mlp_digits_deep", "adadelta", "dg", 15, 32,
     (-3, 2)),
    ("fashion_tanh_mlp_adagrad_heldout7", "mlp_fm_tanh", "adagrad", "fm", 5, 32, (-4, 1)),
    ("digits_cnn_rmsprop_b64_heldout7", "cnn_digits", "rmsprop", "dg", 10, 64, (-5, 0)),
    ("fashion_cnn_nadam_heldout7", "cnn", "nadam", "fm", 3, 64, (-5, 0)),
    ("digits_deep_mlp_nesterov_b16_heldout7", "mlp_digits_deep", "nesterov", "dg", 8,
     16, (-4, 1)),
    ("fashion_cnn_dropout_adamax_heldout8", "cnn_dropout", "adamax", "fm", 4, 64,
     (-5, 0)),
    ("digits_bn_cnn_adam_heldout8", "cnn_digits_bn", "adam", "dg", 10, 64, (-5, 0)),
    ("fashion_ln_mlp_momentum_b128_heldout8", "mlp_fm_ln", "momentum", "fm", 5, 128,
     (-4, 1)),
    ("digits_tanh_mlp_sgd_b16_heldout8", "mlp_digits_tanh", "sgd", "dg", 20, 16,
     (-4, 1)),
    ("fashion_ln_mlp_adamw_heldout9", "mlp_fm_ln", "adamw_1e-4", "fm", 4, 64, (-5, 0)),
    ("digits_dropout_mlp_momentum_b16_heldout9", "mlp_digits_dropout", "momentum",
     "dg", 12, 16, (-4, 1)),
    ("fashion_cnn_bn_rmsprop_b32_heldout9", "cnn_bn", "rmsprop", "fm", 3, 32, (-5, 0)),
    ("digits_cnn_lion_heldout9", "cnn_digits", "lion", "dg", 10, 32, (-6, -1)),
    ("fashion_cnn_dropout_nadam_b128_heldout10", "cnn_dropout", "nadam", "fm", 4, 128,
     (-5, 0)),
    ("digits_tanh_mlp_adam_b8_heldout10", "mlp_digits_tanh", "adam", "dg", 6, 8,
     (-5, 0)),
    ("fashion_bn_mlp_rmsprop_heldout10", "mlp_fm_bn", "rmsprop", "fm", 4, 32, (-5, 0)),
    ("digits_deep_mlp_sgd_b64_heldout10", "mlp_digits_deep", "sgd", "dg", 20, 64,
     (-4, 1)),
    ("fashion_cnn_gap_adam_heldout11", "cnn_gap", "adam", "fm", 3, 64, (-5, 0)),
    ("digits_mlp_adamax_b16_heldout11", "mlp_digits", "adamax", "dg", 10, 16, (-5, 0)),
    ("fashion_deep_mlp_adamw_heldout11", "mlp_fm_deep", "adamw_1e-3", "fm", 4, 64,
     (-5, 0)),
    ("digits_dropout_mlp_rmsprop_heldout11", "mlp_digits_dropout", "rmsprop", "dg",
     12, 32, (-5, 0)),
    ("fashion_cnn_gap_nesterov_b32_heldout12", "cnn_gap", "nesterov", "fm", 3, 32,
     (-4, 1)),
    ("digits_bn_cnn_rmsprop_heldout12", "cnn_digits_bn", "rmsprop", "dg", 10, 32,
     (-5, 0)),
    ("fashion_tanh_mlp_nadam_b128_heldout12", "mlp_fm_tanh", "nadam", "fm", 5, 128,
     (-5, 0)),
    ("digits_deep_mlp_adagrad_b16_heldout12", "mlp_digits_deep", "adagrad", "dg", 10,
     16, (-4, 1)),
    ("fashion_cnn_deep_adamw_b32_heldout13", "cnn_deep", "adamw_1e-4", "fm", 3, 32,
     (-5, 0)),
    ("digits_swish_mlp_nadam_heldout13", "mlp_digits_swish", "nadam", "dg", 12, 32,
     (-5, 0)),
    ("fashion_mlp_adamax_b32_heldout13", "mlp_fm", "adamax", "fm", 4, 32, (-5, 0)),
    ("digits_cnn_momentum_b128_heldout13", "cnn_digits", "momentum", "dg", 15, 128,
     (-4, 1)),
    ("fashion_cnn_bn_nadam_heldout14", "cnn_bn", "nadam", "fm", 3, 64, (-5, 0)),
    ("digits_mlp_lion_b64_heldout14", "mlp_digits", "lion", "dg", 10, 64, (-6, -1)),
    ("fashion_ln_mlp_rmsprop_b128_heldout14", "mlp_fm_ln", "rmsprop", "fm", 4, 128,
     (-5, 0)),
    ("digits_elu_mlp_adamax_heldout14", "mlp_digits_elu", "adamax", "dg", 12, 32,
     (-5, 0)),
    ("fashion_cnn_wide_momentum_b128_heldout15", "cnn_wide", "momentum", "fm", 3, 128,
     (-4, 1)),
    ("digits_selu_mlp_amsgrad_heldout15", "mlp_digits_selu", "amsgrad", "dg", 12, 32,
     (-5, 0)),
    ("fashion_dropout_mlp_nesterov_heldout15", "mlp_fm_dropout", "nesterov", "fm", 4,
     64, (-4, 1)),
    ("digits_cnn_lamb_b16_heldout15", "cnn_digits", "lamb", "dg", 8, 16, (-5, 0)),
    ("fashion_sep_cnn_adam_b32_heldout16", "cnn_sep", "adam", "fm", 3, 32, (-5, 0)),
    ("digits_deep_mlp_clipped_momentum_heldout16", "mlp_digits_deep",
     "momentum_clipnorm", "dg", 12, 32, (-4, 1)),
    ("fashion_cnn_adamw_1e-2_heldout16", "cnn", "adamw_1e-2", "fm", 4, 64, (-5, 0)),
    ("digits_mlp_rmsprop_b256_heldout16", "mlp_digits", "rmsprop", "dg", 30, 256,
     (-5, 0)),
    ("fashion_cnn_bn_momentum_b32_heldout17", "cnn_bn", "momentum", "fm", 3, 32,
     (-4, 1)),
    ("digits_selu_mlp_rmsprop_b64_heldout17", "mlp_digits_selu", "rmsprop", "dg", 15,
     64, (-5, 0)),
    ("fashion_cnn_wide_adam_b128_heldout17", "cnn_wide", "adam", "fm", 4, 128,
     (-5, 0)),
    ("digits_deep_mlp_lamb_heldout17", "mlp_digits_deep", "lamb", "dg", 12, 32,
     (-5, 0)),
]  # fmt: skip


def _models():
    """Layer lists (after the input) of the tasks' models, by name."""
    from keras import layers as L

    def conv_bn(filters, **kw):
        return [L.Conv2D(filters, 3, use_bias=False, **kw), L.BatchNormalization(),
                L.ReLU()]  # fmt: skip

    fashion, digits = (28, 28, 1), (64,)
    return {
        "cnn": (fashion, lambda: [
            L.Conv2D(16, 3, strides=2, activation="relu"),
            L.Conv2D(32, 3, strides=2, activation="relu"),
            L.Flatten(), L.Dense(64, activation="relu")]),
        "cnn_dropout": (fashion, lambda: [
            L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
            L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
            L.Flatten(), L.Dropout(0.3)]),
        "cnn_bn": (fashion, lambda: [
            *conv_bn(16, strides=2), *conv_bn(32, strides=2),
            L.GlobalAveragePooling2D()]),
        "cnn_gap": (fashion, lambda: [
            L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
            L.Conv2D(64, 3, activation="relu"), L.GlobalAveragePooling2D()]),
        "cnn_deep": (fashion, lambda: [
            L.Conv2D(16, 3, strides=2, activation="relu"),
            L.Conv2D(32, 3, strides=2, activation="relu"),
            L.Conv2D(64, 3, strides=2, activation="relu"),
            L.GlobalAveragePooling2D()]),
        "cnn_wide": (fashion, lambda: [
            L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
            L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(),
            L.Flatten(), L.Dense(128, activation="relu")]),
        "cnn_sep": (fashion, lambda: [
            L.Conv2D(16, 3, strides=2, activation="relu"),
            L.SeparableConv2D(32, 3, strides=2, activation="relu"),
            L.SeparableConv2D(64, 3, activation="relu"),
            L.GlobalAveragePooling2D()]),
        "mlp_fm": (fashion, lambda: [L.Flatten(), L.Dense(128, activation="relu")]),
        "mlp_fm_dropout": (fashion, lambda: [
            L.Flatten(), L.Dense(256, activation="relu"), L.Dropout(0.2)]),
        "mlp_fm_tanh": (fashion, lambda: [L.Flatten(), L.Dense(128, activation="tanh")]),
        "mlp_fm_deep": (fashion, lambda: [
            L.Flatten(), L.Dense(256, activation="relu"),
            L.Dense(128, activation="relu")]),
        "mlp_fm_bn": (fashion, lambda: [
            L.Flatten(), L.Dense(128, use_bias=False), L.BatchNormalization(),
            L.ReLU()]),
        "mlp_fm_ln": (fashion, lambda: [
            L.Flatten(), L.Dense(128), L.LayerNormalization(),
            L.Activation("gelu")]),
        "mlp_digits": (digits, lambda: [L.Dense(64, activation="relu")]),
        "mlp_digits_deep": (digits, lambda: [
            L.Dense(128, activation="relu"), L.Dense(128, activation="relu")]),
        "mlp_digits_elu": (digits, lambda: [L.Dense(256, activation="elu")]),
        "mlp_digits_selu": (digits, lambda: [
            L.Dense(64, activation="selu", kernel_initializer="lecun_normal"),
            L.Dense(64, activation="selu", kernel_initializer="lecun_normal")]),
        "mlp_digits_swish": (digits, lambda: [L.Dense(64, activation="swish")]),
        "mlp_digits_tanh": (digits, lambda: [L.Dense(32, activation="tanh")]),
        "mlp_digits_dropout": (digits, lambda: [
            L.Dense(128, activation="relu"), L.Dropout(0.5)]),
        "cnn_digits": (digits, lambda: [
            L.Reshape((8, 8, 1)), L.Conv2D(16, 3, activation="relu"), L.Flatten()]),
        "cnn_digits_bn": (digits, lambda: [
            L.Reshape((8, 8, 1)), *conv_bn(16), L.Flatten()]),
    }  # fmt: skip


def _optimizers():
    from keras import optimizers as O

    return {
        "sgd": lambda lr: O.SGD(lr),
        "momentum": lambda lr: O.SGD(lr, momentum=0.9),
        "nesterov": lambda lr: O.SGD(lr, momentum=0.9, nesterov=True),
        "adam": lambda lr: O.Adam(lr),
        "adamw_1e-4": lambda lr: O.AdamW(lr, weight_decay=1e-4),
        "adamw_1e-3": lambda lr: O.AdamW(lr, weight_decay=1e-3),
        "adamw_1e-2": lambda lr: O.AdamW(lr, weight_decay=1e-2),
        "amsgrad": lambda lr: O.Adam(lr, amsgrad=True),
        "lamb": lambda lr: O.Lamb(lr),
        "momentum_clipnorm": lambda lr: O.SGD(lr, momentum=0.9, clipnorm=1.0),
        "adamax": lambda lr: O.Adamax(lr),
        "nadam": lambda lr: O.Nadam(lr),
        "rmsprop": lambda lr: O.RMSprop(lr),
        "rmsprop_momentum": lambda lr: O.RMSprop(lr, momentum=0.9),
        "adagrad": lambda lr: O.Adagrad(lr),
        "adadelta": lambda lr: O.Adadelta(lr),
        "lion": lambda lr: O.Lion(lr),
    }


def load_tasks():
    """``{name: (make_model, make_optimizer, data, epochs, batch, rates)}``."""
    import keras

    from keras_lr.data import load_fashion_mnist

    (x, y), _ = load_fashion_mnist()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))[:10000]
    xf = x[idx, ..., None].astype("float32") / 255.0
    yf = y[idx].astype("int32")
    fm = ((xf[:8000], yf[:8000]), (xf[8000:], yf[8000:]))

    from sklearn.datasets import load_digits

    d = load_digits()
    xd = (d.data / 16.0).astype("float32")
    yd = d.target.astype("int32")
    p = np.random.default_rng(1).permutation(len(xd))
    xd, yd = xd[p], yd[p]
    dg = ((xd[:1300], yd[:1300]), (xd[1300:], yd[1300:]))

    models, optimizers, datasets = _models(), _optimizers(), {"fm": fm, "dg": dg}

    def maker(model):
        shape, body = models[model]
        return lambda: keras.Sequential(
            [keras.Input(shape), *body(), keras.layers.Dense(10)]
        )

    return {
        name: (maker(model), optimizers[opt], datasets[data], epochs, bs, grid(*exps))
        for name, model, opt, data, epochs, bs, exps in TASKS
    }


def train(only: set[str] | None, fit_seed: int = 1) -> dict:
    import keras

    runs = {}
    for name, (make, opt, data, epochs, bs, rates) in load_tasks().items():
        if only and name not in only:
            continue
        (x, y), (xv, yv) = data
        keras.utils.set_random_seed(0)
        init = make()
        weights = init.get_weights()
        for lr in rates:
            model = make()
            model.set_weights(weights)
            model.compile(
                optimizer=opt(lr),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            keras.utils.set_random_seed(fit_seed)
            t0 = time.perf_counter()
            h = model.fit(
                x,
                y,
                batch_size=bs,
                epochs=epochs,
                validation_data=(xv, yv),
                verbose=0,
            )
            hist = {k: [float(v) for v in vals] for k, vals in h.history.items()}
            runs.setdefault(name, []).append({"lr": lr, "history": hist})
            acc = hist["val_accuracy"][-1]
            print(
                f"{name} lr={lr:.3g} val_acc={acc:.4f} "
                f"({time.perf_counter() - t0:.1f}s)"
            )
    return runs


def label(task_runs: list[dict]) -> list[str]:
    def final(r):
        acc = r["history"]["val_accuracy"][-1]
        return acc if np.isfinite(acc) else 0.0

    accs = [final(r) for r in task_runs]
    best = int(np.argmax(accs))
    best_lr = task_runs[best]["lr"]
    labels = []
    for r, acc in zip(task_runs, accs):
        if acc >= accs[best] - 0.02:
            labels.append("good")
        elif r["lr"] > best_lr:
            labels.append("too_high")
        else:
            labels.append("too_low")
    return labels


def _round_order(item: tuple[str, list[int]]) -> tuple[int, str]:
    """Rounds in numeric order; a task missing from `ROUNDS` ("?") last."""
    head = item[0].split()[0]
    return (int(head), "") if head.isdigit() else (10**9, head)


def _without_accuracy(history: dict) -> dict:
    """The history as a run compiled without an accuracy metric logs it."""
    return {k: v for k, v in history.items() if "accuracy" not in k}


def score(runs: dict, accuracy: bool = True) -> None:
    """Scores `diagnose` against the grids' labels (labels always use the
    validation accuracy; with ``accuracy=False`` `diagnose` sees only the
    losses, as for a model compiled without an accuracy metric)."""
    from keras_lr import diagnose

    rows, agree, total, high_on_good = [], 0, 0, 0
    confusion: Counter = Counter()
    by_round: dict[str, list[int]] = {}
    for name, task_runs in runs.items():
        labels = label(task_runs)
        task_agree = 0
        for r, lab in zip(task_runs, labels):
            d = diagnose(r["history"] if accuracy else _without_accuracy(r["history"]))
            ok = d.verdict == lab
            task_agree += ok
            high_on_good += lab == "good" and d.verdict == "too_high"
            confusion[(lab, d.verdict)] += 1
            print(
                f"  {name:28s} lr={r['lr']:<9.3g} "
                f"acc={r['history']['val_accuracy'][-1]:.3f} label={lab:9s} "
                f"verdict={d.verdict:11s} {'' if ok else '<-- differs'}"
            )
        rows.append((name, len(task_runs), task_agree))
        tally = by_round.setdefault(ROUNDS.get(name, "?"), [0, 0])
        tally[0] += task_agree
        tally[1] += len(task_runs)
        agree += task_agree
        total += len(task_runs)
    print("\n| task | runs | agree | agreement |\n|---|---|---|---|")
    for name, n, a in rows:
        print(f"| {name} | {n} | {a} | {100 * a / n:.0f}% |")
    print(f"| **all** | {total} | {agree} | **{100 * agree / total:.1f}%** |")
    print("\n| round added | runs | agree | agreement |\n|---|---|---|---|")
    for name, (a, n) in sorted(by_round.items(), key=_round_order):
        print(f"| {name} | {n} | {a} | {100 * a / n:.0f}% |")
    print(f"\n`too_high` verdicts on runs the grid marks good: {high_on_good}")
    print("\n| label \\ verdict | good | too_high | too_low | overfitting |")
    print("|---|---|---|---|---|")
    for lab in ("good", "too_high", "too_low"):
        cells = [
            str(confusion[(lab, v)])
            for v in ("good", "too_high", "too_low", "overfitting")
        ]
        print(f"| {lab} | " + " | ".join(cells) + " |")


def score_during(runs: dict, accuracy: bool = True, min_epochs: int = 3) -> None:
    """What `LRMonitor` warns during the runs, by label.

    Each run's epoch logs are fed to an `LRMonitor` (default settings) as
    `fit` would, then ``on_train_end``; a run counts when the monitor
    reported a ``too_high`` finding. For comparison, "readings" counts the
    runs with a ``too_high`` reading of `diagnose` at some epoch from
    `min_epochs` on, which the monitor reported before stop 21 (it now
    waits one epoch for a confirmation of its noisy readings).
    """
    import logging

    from keras_lr import diagnose
    from keras_lr.callbacks import LRMonitor

    logging.getLogger("keras_lr").setLevel(logging.ERROR)
    warned, read, total = Counter(), Counter(), Counter()
    for task_runs in runs.values():
        for r, lab in zip(task_runs, label(task_runs)):
            h = r["history"] if accuracy else _without_accuracy(r["history"])
            n = len(h["loss"])
            total[lab] += 1
            read[lab] += any(
                diagnose({key: v[:k] for key, v in h.items()}).verdict == "too_high"
                for k in range(min_epochs, n + 1)
            )
            monitor = LRMonitor(min_epochs=min_epochs, verbose=0)
            monitor.on_train_begin()
            for epoch in range(n):
                monitor.on_epoch_end(epoch, {key: v[epoch] for key, v in h.items()})
            monitor.on_train_end()
            warned[lab] += any(f.verdict == "too_high" for _, f in monitor.findings)
    print(
        f"\nRuns warned `too_high` during training (LRMonitor, min_epochs="
        f"{min_epochs}; in brackets, runs with a `too_high` reading at some "
        "epoch, what it warned before stop 21):"
    )
    for lab in ("good", "too_high", "too_low"):
        print(f"  labelled {lab}: {warned[lab]} of {total[lab]} ({read[lab]})")


def compare_replicate(runs: dict, replicate: dict) -> None:
    """How reproducible are the grid's labels? Two data orders compared.

    The replicate trains every rate of a task again from the same initial
    weights with another seed for the data order (and dropout). A run's
    label agrees when both grids give it the same one; `diagnose`'s verdict
    on the original run is also scored against the replicate's labels.
    """
    from keras_lr import diagnose

    print("\n| task | runs | labels agree | diagnose vs own labels "
          "| diagnose vs replicate's labels |")  # fmt: skip
    print("|---|---|---|---|---|")
    totals = np.zeros(4, dtype=int)
    for name, again in replicate.items():
        first = runs[name]
        if [r["lr"] for r in first] != [r["lr"] for r in again]:
            raise ValueError(f"{name}: the replicate's rates differ")
        own, other = label(first), label(again)
        verdicts = [diagnose(r["history"]).verdict for r in first]
        row = np.array([
            len(own),
            sum(a == b for a, b in zip(own, other)),
            sum(v == a for v, a in zip(verdicts, own)),
            sum(v == b for v, b in zip(verdicts, other)),
        ])  # fmt: skip
        totals += row
        n = row[0]
        print(f"| {name} | {n} | " + " | ".join(
            f"{k} ({100 * k / n:.0f}%)" for k in row[1:]) + " |")  # fmt: skip
    n = totals[0]
    print(f"| **all** | {n} | " + " | ".join(
        f"**{k} ({100 * k / n:.1f}%)**" for k in totals[1:]) + " |")  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replay", action="store_true", help="score the saved runs")
    p.add_argument("--tasks", default="", help="comma list of task names")
    p.add_argument(
        "--replicate",
        type=int,
        default=None,
        metavar="SEED",
        help="train the tasks again with this data-order seed (the grids use 1) "
        "and compare the labels; --replay --replicate 0 only compares",
    )
    p.add_argument(
        "--no-accuracy",
        action="store_true",
        help="diagnose the histories without their accuracy series (a model "
        "compiled with no accuracy metric); the labels still use it",
    )
    args = p.parse_args()
    if args.replicate is not None:
        saved = json.loads(REPLICATE.read_text()) if REPLICATE.exists() else {}
        if not args.replay:
            only = set(filter(None, args.tasks.split(",")))
            saved.update(train(only, fit_seed=args.replicate))
            REPLICATE.write_text(json.dumps(saved, indent=1))
        compare_replicate(json.loads(RUNS.read_text()), saved)
        return
    if args.replay:
        runs = json.loads(RUNS.read_text())
    else:
        import keras

        print(f"backend={keras.backend.backend()}, keras {keras.__version__}")
        only = set(filter(None, args.tasks.split(",")))
        runs = train(only)
        RUNS.parent.mkdir(parents=True, exist_ok=True)
        if only and RUNS.exists():
            saved = json.loads(RUNS.read_text())
            saved.update(runs)
            runs = saved
        RUNS.write_text(json.dumps(runs, indent=1))
    score(runs, accuracy=not args.no_accuracy)
    score_during(runs, accuracy=not args.no_accuracy)


if __name__ == "__main__":
    main()
