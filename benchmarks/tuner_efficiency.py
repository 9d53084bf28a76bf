"""Trials needed to find a good learning rate × batch size: ours vs plain KerasTuner.

    python benchmarks/tuner_efficiency.py [--seeds 5] [--max-trials 40]

Method. A Fashion-MNIST task (an MLP on 14×14 images, 6,000 training and
2,000 validation images from the full set, SGD with momentum 0.9, a fixed
budget of 2 epochs per trial) is trained once on every point of a grid:
rates ``1e-3 · 2**k`` (k = 0..13) × global batch sizes 32, 64, 128, 256. The
best grid point is the *grid oracle*. Each tuner then searches this table:
a proposed rate is snapped to the nearest grid rate (in log2), and the trial
scores that grid point's validation accuracy, so every tuner sees the same
numbers and the comparison measures the search, not training noise.

- plain: KerasTuner `RandomSearch` / `BayesianOptimization` over
  ``hp.Choice(batch_size) × hp.Float(learning_rate, 1e-3, 8.192, log)``;
- ours, fixed range: `LRBatchSizeHyperModel(optimizer="sgd",
  lr_range=(1e-3, 1.024))`, whose rate is searched in normalised units
  ``lr / (B / 32)`` (linear scaling, Goyal et al. 2017, arXiv:1706.02677),
  under the same oracles;
- ours, auto range (the hypermodel's default, ``lr_range="auto"``): one
  real range test of the real model at the reference batch size sets the
  interval, scaled to each batch by the scaling rule (its steps are counted
  in the search's cost), and the tuner searches the position inside it.

Search seeds are 0, 1000, 2000, ...: KerasTuner's oracles draw trial ``t``
of a search seeded ``s`` from seed ``s + t``, so consecutive seeds would
replay each other's draws shifted by one trial.

Reported: over the seeds, the median number of trials (and of training
steps, ``epochs · ceil(n / B)`` per trial) until the best score so far is
within 0.5 point of the grid oracle (a search that never gets there counts
as `max_trials` + 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_tuner
import numpy as np

from keras_lr.data import load_fashion_mnist
from keras_lr.tuner import LRBatchSizeHyperModel

BATCHES = (32, 64, 128, 256)
RATES = tuple(1e-3 * 2.0**k for k in range(14))
EPOCHS, N_TRAIN, N_VAL = 2, 6000, 2000
GRID = Path(__file__).resolve().parent / "results" / "tuner_grid.json"
# KerasTuner's oracles draw trial t of a search seeded s from seed s + t, so
# searches seeded 0, 1, 2, ... share most of their draws: space them apart.
SEEDS = tuple(range(0, 1_000_000, 1000))


def data():
    (x, y), (xt, yt) = load_fashion_mnist()
    rng = np.random.default_rng(0)
    i = rng.permutation(len(x))[:N_TRAIN]
    j = rng.permutation(len(xt))[:N_VAL]
    prep = lambda a: (a[:, ::2, ::2].reshape(len(a), -1) / 255.0).astype("float32")  # noqa: E731
    return (prep(x[i]), y[i].astype("int32")), (prep(xt[j]), yt[j].astype("int32"))


def mlp(hp=None) -> keras.Model:
    return keras.Sequential([
        keras.Input((196,)), keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])  # fmt: skip


def train(lr, batch, train_data, val_data) -> float:
    keras.utils.set_random_seed(0)
    model = mlp()
    model.compile(
        keras.optimizers.SGD(lr, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(*train_data, batch_size=batch, epochs=EPOCHS, verbose=0)
    _, acc = model.evaluate(*val_data, batch_size=1000, verbose=0)
    return 100.0 * acc if np.isfinite(acc) else 0.0


def snap(lr: float) -> float:
    k = int(np.clip(round(math.log2(lr / 1e-3)), 0, len(RATES) - 1))
    return RATES[k]


class TableTuner(keras_tuner.Tuner):
    def __init__(self, table, rate_of, **kwargs):
        super().__init__(**kwargs)
        self.table, self.rate_of, self.history = table, rate_of, []

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        batch = values["batch_size"]
        acc = self.table[(snap(self.rate_of(values)), batch)]
        self.history.append((acc, EPOCHS * math.ceil(N_TRAIN / batch)))
        return {"val_accuracy": acc}


def plain_build(hp):
    hp.Choice("batch_size", list(BATCHES))
    hp.Float("learning_rate", RATES[0], RATES[-1], sampling="log")
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def tiny(hp):
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def auto_ranges(train_data) -> tuple[dict, int]:
    """Each batch size's interval from the hypermodel's own range test."""
    hm = LRBatchSizeHyperModel(
        mlp, batch_sizes=BATCHES, optimizer="sgd", lr_range="auto",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distribution_strategy=None,
    )  # fmt: skip
    keras.utils.set_random_seed(0)
    ranges = {batch: hm.auto_range(mlp(), batch, train_data, {}) for batch in BATCHES}
    return ranges, hm.range_test_steps  # one range test, at the reference batch


def run(kind, oracle_name, seed, table, max_trials, ranges=None):
    if kind.startswith("ours"):
        lr_range = "auto" if kind == "ours-auto" else (1e-3, 1.024)
        hm = LRBatchSizeHyperModel(
            tiny, batch_sizes=BATCHES, optimizer="sgd", lr_range=lr_range,
            loss="mse", distribution_strategy=None,
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
        tuner = TableTuner(table, rate_of, hypermodel=hypermodel, oracle=oracle,
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
    args = parser.parse_args()
    train_data, val_data = data()
    start = time.perf_counter()
    # The grid's trainings are cached (delete the file to train them again).
    cached = json.loads(GRID.read_text()) if GRID.exists() else {}
    table = {}
    for b in BATCHES:
        for lr in RATES:
            key = f"{lr:.6g}|{b}"
            if key not in cached:
                cached[key] = train(lr, b, train_data, val_data)
            table[(lr, b)] = cached[key]
    GRID.write_text(json.dumps(cached, indent=1))
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
                    run(kind, oracle_name, seed, table, args.max_trials,
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
