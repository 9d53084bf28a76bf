"""Trials needed to find a good learning rate × batch size: ours vs plain KerasTuner.

    python benchmarks/tuner_efficiency.py [--task mlp-sgd] [--seeds 5] [--max-trials 40]

Method. A task (``--task``, see `TASKS`; the default, ``mlp-sgd``, is an MLP
on 14×14 Fashion-MNIST images, 6,000 training and 2,000 validation images
from the full set, SGD with momentum 0.9, a fixed budget of 2 epochs per
trial) is trained once on every point of a grid: 14 rates a factor 2 apart
(``1e-3 · 2**k``, k = 0..13, for SGD) × global batch sizes 32, 64, 128, 256.
The best grid point is the *grid oracle*. The other tasks check that the
figure is not this one task's: ``cnn-adam`` (a strided CNN on 28×28 images
with Adam, square-root scaling) and ``digits-rmsprop`` (an MLP on scikit-learn's
8×8 digits with RMSprop, 10 epochs), both defined after the hypermodel's
auto interval was fixed. Each tuner then searches this table:
a proposed rate is snapped to the nearest grid rate (in log2), and the trial
scores that grid point's validation accuracy, so every tuner sees the same
numbers and the comparison measures the search, not training noise.

- plain: KerasTuner `RandomSearch` / `BayesianOptimization` over
  ``hp.Choice(batch_size) × hp.Float(learning_rate, r_0, 2**13 r_0, log)``;
- ours, fixed range: `LRBatchSizeHyperModel(lr_range=(r_0, 2**10 r_0))`,
  ``r_0`` the grid's lowest rate, whose rate is searched in normalised units
  ``lr / f(B / 32)`` (linear scaling for SGD, Goyal et al. 2017,
  arXiv:1706.02677; square root for Adam and RMSprop, Malladi et al. 2022,
  arXiv:2205.10287), under the same oracles;
- ours, auto range (the hypermodel's default, ``lr_range="auto"``): one
  real range test of the real model at the reference batch size sets the
  interval, scaled to each batch by the scaling rule (its steps are counted
  in the search's cost), and the tuner searches the position inside it.

Search seeds are 1000, 2000, 3000, ...: KerasTuner's oracles draw trial
``t`` of a search seeded ``s`` from seed ``s + t``, so consecutive seeds
would replay each other's draws shifted by one trial; and an oracle given
``seed=0`` draws a random seed instead, so the figures recorded before stop
12 (seeds 0, 1000, ...) hold one search, the first, that cannot be repeated.

Reported: over the seeds, the median number of trials (and of training
steps, ``epochs · ceil(n / B)`` per trial) until the best score so far is
within 0.5 point of the grid oracle (a search that never gets there counts
as `max_trials` + 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_tuner
import numpy as np

from keras_lr.data import load_fashion_mnist
from keras_lr.tuner import LRBatchSizeHyperModel

BATCHES = (32, 64, 128, 256)
RESULTS = Path(__file__).resolve().parent / "results"
# KerasTuner's oracles draw trial t of a search seeded s from seed s + t, so
# searches seeded 0, 1, 2, ... share most of their draws: space them apart.
# Seed 0 is skipped: an oracle given seed=0 draws a random seed instead
# (`seed or random.randint(...)`), so a search "seeded 0" is not repeatable.
SEEDS = tuple(range(1000, 1_001_000, 1000))
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def fmnist_data(n_train: int = 6000, n_val: int = 2000, half: bool = True):
    (x, y), (xt, yt) = load_fashion_mnist()
    rng = np.random.default_rng(0)
    i = rng.permutation(len(x))[:n_train]
    j = rng.permutation(len(xt))[:n_val]

    def prep(a):
        a = (a / 255.0).astype("float32")
        return a[:, ::2, ::2].reshape(len(a), -1) if half else a[..., None]

    return (prep(x[i]), y[i].astype("int32")), (prep(xt[j]), yt[j].astype("int32"))


def digits_data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(7).permutation(len(y))
    x, y = x[order], y[order]
    return (x[:1300], y[:1300]), (x[1300:], y[1300:])


def mlp(hp=None) -> keras.Model:
    return keras.Sequential([
        keras.Input((196,)), keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])  # fmt: skip


def strided_cnn(hp=None) -> keras.Model:
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(16, 3, strides=2, activation="relu"),
        L.Conv2D(32, 3, strides=2, activation="relu"), L.Flatten(), L.Dense(10),
    ])  # fmt: skip


def digits_mlp(hp=None) -> keras.Model:
    return keras.Sequential([
        keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10),
    ])  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TunerTask:
    data: Callable[[], tuple]
    model: Callable[..., keras.Model]
    optimizer: Any  # the hypermodel's `optimizer`: a name or a callable
    lowest_rate: float
    epochs: int
    grid_file: str

    @property
    def rates(self) -> tuple[float, ...]:
        return tuple(self.lowest_rate * 2.0**k for k in range(14))

    def make_optimizer(self, lr: float):
        if callable(self.optimizer):
            return self.optimizer(lr)
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(lr, momentum=0.9)
        return keras.optimizers.get({"class_name": self.optimizer,
                                     "config": {"learning_rate": lr}})  # fmt: skip


def rmsprop(lr):
    return keras.optimizers.RMSprop(lr)


TASKS = {
    "mlp-sgd": TunerTask(fmnist_data, mlp, "sgd", 1e-3, 2, "tuner_grid.json"),
    "cnn-adam": TunerTask(
        lambda: fmnist_data(half=False), strided_cnn, "adam", 1e-5, 2,
        "tuner_grid_cnn_adam.json",
    ),
    "digits-rmsprop": TunerTask(
        digits_data, digits_mlp, rmsprop, 1e-5, 10, "tuner_grid_digits_rmsprop.json"
    ),
}  # fmt: skip
TASK = TASKS["mlp-sgd"]  # set by main()


def n_train(train_data) -> int:
    return len(train_data[1])


def train(lr, batch, train_data, val_data) -> float:
    keras.utils.set_random_seed(0)
    model = TASK.model()
    model.compile(TASK.make_optimizer(lr), LOSS, metrics=["accuracy"])
    model.fit(*train_data, batch_size=batch, epochs=TASK.epochs, verbose=0)
    _, acc = model.evaluate(*val_data, batch_size=1000, verbose=0)
    return 100.0 * acc if np.isfinite(acc) else 0.0


def snap(lr: float) -> float:
    rates = TASK.rates
    k = int(np.clip(round(math.log2(lr / rates[0])), 0, len(rates) - 1))
    return rates[k]


class TableTuner(keras_tuner.Tuner):
    def __init__(self, table, rate_of, n_train, **kwargs):
        super().__init__(**kwargs)
        self.table, self.rate_of, self.history = table, rate_of, []
        self.n_train = n_train

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        batch = values["batch_size"]
        acc = self.table[(snap(self.rate_of(values)), batch)]
        self.history.append((acc, TASK.epochs * math.ceil(self.n_train / batch)))
        return {"val_accuracy": acc}


def plain_build(hp):
    hp.Choice("batch_size", list(BATCHES))
    hp.Float("learning_rate", TASK.rates[0], TASK.rates[-1], sampling="log")
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def tiny(hp):
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def auto_ranges(train_data) -> tuple[dict, int]:
    """Each batch size's interval from the hypermodel's own range test."""
    hm = LRBatchSizeHyperModel(
        TASK.model, batch_sizes=BATCHES, optimizer=TASK.optimizer,
        lr_scaling=scaling(), lr_range="auto", loss=LOSS, distribution_strategy=None,
    )  # fmt: skip
    keras.utils.set_random_seed(0)
    model = TASK.model()
    ranges = {batch: hm.auto_range(model, batch, train_data, {}) for batch in BATCHES}
    return ranges, hm.range_test_steps  # one range test, at the reference batch


def scaling() -> str:
    """The hypermodel's default rule for the task's optimizer."""
    return "linear" if TASK.optimizer == "sgd" else "sqrt"


def run(kind, oracle_name, seed, table, n, max_trials, ranges=None):
    if kind.startswith("ours"):
        low = TASK.rates[0]
        lr_range = "auto" if kind == "ours-auto" else (low, low * 2.0**10)
        hm = LRBatchSizeHyperModel(
            tiny, batch_sizes=BATCHES, optimizer=TASK.optimizer, lr_range=lr_range,
            lr_scaling=scaling(), loss="mse", distribution_strategy=None,
        )  # fmt: skip
        if ranges is not None:
            hm._range_cache.update(ranges)
        hypermodel, rate_of = hm, hm.learning_rate
    else:
        hypermodel, rate_of = plain_build, lambda v: v["learning_rate"]
    objective = keras_tuner.Objective("val_accuracy", "max")
    if oracle_name == "random":
        oracle = keras_tuner.oracles.RandomSearchOracle(
            objective=objective, max_trials=max_trials, seed=seed
        )
    else:
        oracle = keras_tuner.oracles.BayesianOptimizationOracle(
            objective=objective, max_trials=max_trials, seed=seed,
            num_initial_points=4)  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tuner = TableTuner(table, rate_of, n, hypermodel=hypermodel, oracle=oracle,
                           directory=d, project_name="p")  # fmt: skip
        tuner.search(verbose=0)
    return tuner.history


def to_target(history, target, max_trials, steps=0):
    best = -1.0
    for i, (acc, s) in enumerate(history, 1):
        best, steps = max(best, acc), steps + s
        if best >= target:
            return i, steps
    return max_trials + 1, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-trials", type=int, default=40)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="index of the first search seed (a replication takes the next ones)",
    )
    parser.add_argument("--task", choices=sorted(TASKS), default="mlp-sgd")
    args = parser.parse_args()
    global TASK
    TASK = TASKS[args.task]
    RATES = TASK.rates
    grid_path = RESULTS / TASK.grid_file
    train_data, val_data = TASK.data()
    n = n_train(train_data)
    start = time.perf_counter()
    # The grid's trainings are cached (delete the file to train them again).
    cached = json.loads(grid_path.read_text()) if grid_path.exists() else {}
    table = {}
    for b in BATCHES:
        for lr in RATES:
            key = f"{lr:.6g}|{b}"
            if key not in cached:
                cached[key] = train(lr, b, train_data, val_data)
            table[(lr, b)] = cached[key]
        grid_path.write_text(json.dumps(cached, indent=1))
    grid_time = time.perf_counter() - start
    best = max(table.values())
    target = best - 0.5
    where = max(table, key=table.get)
    print(f"grid: {len(table)} trainings in {grid_time:.0f}s; oracle "
          f"{best:.2f}% at {where}; target {target:.2f}%\n")  # fmt: skip
    print("| batch \\ lr | " + " | ".join(f"{r:.3g}" for r in RATES) + " |")
    print("|---" * (len(RATES) + 1) + "|")
    for b in BATCHES:
        print(f"| {b} | " + " | ".join(f"{table[(r, b)]:.1f}" for r in RATES) + " |")
    ranges, range_steps = auto_ranges(train_data)
    print("\nauto ranges (one range test at the reference batch, "
          f"{range_steps} steps in all): " + ", ".join(
              f"{b}: {lo:.3g}-{hi:.3g}" for b, (lo, hi) in ranges.items()))  # fmt: skip
    print("\n| search | trials to target (median) | per seed | steps (median) |")
    print("|---|---|---|---|")
    medians = {}
    for oracle_name in ("random", "bayesian"):
        for kind in ("plain", "ours", "ours-auto"):
            auto = kind == "ours-auto"
            results = [
                to_target(
                    run(kind, oracle_name, seed, table, n, args.max_trials,
                        ranges if auto else None),
                    target, args.max_trials, range_steps if auto else 0)
                for seed in SEEDS[args.first_seed : args.first_seed + args.seeds]
            ]  # fmt: skip
            trials = [r[0] for r in results]
            steps = [r[1] for r in results]
            medians[(kind, oracle_name)] = float(np.median(trials))
            print(f"| {kind} {oracle_name} | {np.median(trials):.1f} | {trials} | "
                  f"{np.median(steps):.0f} |", flush=True)  # fmt: skip
    plain = min(medians[("plain", "random")], medians[("plain", "bayesian")])
    for kind in ("ours", "ours-auto"):
        ours = min(medians[(kind, "random")], medians[(kind, "bayesian")])
        print(f"best plain / best {kind} (median trials): {plain:.1f} / {ours:.1f} "
              f"= {plain / ours:.2f}x (goal: >= 3x)")  # fmt: skip


if __name__ == "__main__":
    main()
