"""Where does the best rate lie against the auto range's ``lr_min``?

    python benchmarks/auto_range_check.py

`LRBatchSizeHyperModel(lr_range="auto")` runs one short LR range test
(`range_test_steps`, 50 steps) and searches an interval around ``lr_min``,
the rate at the minimum of the test's zero-phase smoothed curve
(`LRRangeTestResult.suggest_range`). This check runs that same range test on
every task of the suggestion-quality benchmark (``_tasks.TASKS``: real
Fashion-MNIST and digits models, four optimizers, batch 16 to 128; two
seeds, ``lr_min`` their geometric mean) and reads each task's best rate off
its grid (``results/suggestion_grid.json``, seed-averaged validation
accuracy, 3 rates per decade; trained by ``suggestion_quality.py``).

Reported per task: ``log10(best / lr_min)``, the rates within 1 point of the
best (the good band), and, for each candidate interval, the probability
that one trial drawn log-uniformly from it lands on the good band (rates
snapped to the nearest grid rate). An interval that misses the band has
probability 0.

A few minutes (26 short range tests).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _tasks
import keras
import numpy as np

import keras_lr

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = 50  # LRBatchSizeHyperModel's default range_test_steps
SEEDS = (0, 1)
#: Candidate intervals, as (low, high) multiples of lr_min.
INTERVALS = {
    "[lr_min/100, lr_min]": (0.01, 1.0),
    "[lr_min/30, 3 lr_min]": (1 / 30, 3.0),
    "[lr_min/10, 10 lr_min]": (0.1, 10.0),
}
TOL = 0.01  # the good band: within 1 point of the grid's best


def lr_min(task, data) -> float:
    (x, y), _ = data
    found = []
    for seed in SEEDS:
        model = _tasks.compiled(task, x.shape[1:], seed)
        keras.utils.set_random_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = keras_lr.lr_range_test(
                model, x, y, batch_size=task.batch_size, num_steps=STEPS, verbose=0
            )
        found.append(result.suggest_range()[1])
    return float(np.exp(np.mean(np.log(found))))


def hit_probability(rates, ok, low, high) -> float:
    tried = np.geomspace(low, high, 4001)
    nearest = np.abs(np.log(rates)[None, :] - np.log(tried)[:, None]).argmin(axis=1)
    return float(ok[nearest].mean())


def main() -> None:
    grids = json.loads((RESULTS / "suggestion_grid.json").read_text())
    names = list(INTERVALS)
    print("| task | lr_min | best rate | log10(best / lr_min) | good band | "
          + " | ".join(f"p {n}" for n in names) + " |")  # fmt: skip
    print("|---" * (5 + len(names)) + "|")
    logs, probs = [], {n: [] for n in names}
    for task in _tasks.TASKS:
        rates = task.grid_lrs()
        grid = grids[task.name]
        acc = np.array([np.mean([grid[f"{r:.6g}|{s}"] for s in SEEDS]) for r in rates])
        ok = acc >= acc.max() - TOL
        best = float(rates[int(np.argmax(acc))])
        m = lr_min(task, _tasks.load(task.data))
        logs.append(np.log10(best / m))
        row = []
        for n, (lo, hi) in INTERVALS.items():
            p = hit_probability(rates, ok, lo * m, hi * m)
            probs[n].append(p)
            row.append(f"{p:.2f}")
        band = f"{rates[ok][0]:.3g}-{rates[ok][-1]:.3g}"
        print(f"| {task.name} | {m:.3g} | {best:.3g} | {logs[-1]:+.2f} | {band} | "
              + " | ".join(row) + " |", flush=True)  # fmt: skip
    logs = np.array(logs)
    print(f"\nlog10(best / lr_min): mean {logs.mean():+.2f}, median "
          f"{np.median(logs):+.2f}, sd {logs.std(ddof=1):.2f}, range "
          f"{logs.min():+.2f} to {logs.max():+.2f} over {logs.size} tasks")  # fmt: skip
    for n in names:
        p = np.array(probs[n])
        missed = int(np.sum(p == 0))
        hit = p[p > 0]
        print(f"{n}: misses the good band on {missed} of {p.size} tasks; "
              f"median p {np.median(p):.2f}; mean 1/p where hit "
              f"{np.mean(1 / hit):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
