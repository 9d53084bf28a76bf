"""How good are learning-rate suggestions? Regret against a grid oracle.

For each task (real data, different models and optimizers): train from the
same initialisation at a log grid of rates (3 per decade, >= 13 points) for
a fixed budget, for each seed; the grid's best seed-averaged validation
accuracy is the oracle. Then, per seed, run a range test from that seed's
initial model and train at the rate each rule suggests: fastai's valley,
steep and minimum/10, torch-lr-finder's steepest gradient, keras_lr's curve
rule, and `find_best_learning_rate` (range test plus a short race). The
regret is oracle minus the rule's seed-averaged accuracy, in points.

Tasks marked "held out" were added, and their grids first trained, after
keras_lr's rules were last revised: their regret is the honest figure; the
other tasks were looked at while the rules were written.

    python benchmarks/suggestion_quality.py            # full run, prints a table
    python benchmarks/suggestion_quality.py --quick    # 1 seed, 2 tasks (a smoke run)

The grid is cached in benchmarks/results/suggestion_grid.json (delete it to
retrain); the table is also written to benchmarks/results/suggestion_quality.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _tasks
import keras
import numpy as np

import keras_lr
from keras_lr.range_test.api import MAX_HOLDOUT_SAMPLES

RESULTS = Path(__file__).resolve().parent / "results"
RULES = ("valley", "steep", "minimum", "steepest", "default")
OURS = "find_best_learning_rate"


def train_cached(task, data, lr: float, seed: int, cache: dict) -> float:
    """Validation accuracy at `lr`, from the cache when this run was made."""
    entry = cache.setdefault(task.name, {})
    key = f"{lr:.6g}|{seed}"
    if key not in entry:
        entry[key] = _tasks.train(task, data, lr, seed)
    return entry[key]


def grid_accuracies(task, data, seeds, cache: dict) -> dict:
    key = task.name
    entry = cache.setdefault(key, {})
    for lr in task.grid_lrs():
        for seed in seeds:
            k = f"{lr:.6g}|{seed}"
            if k not in entry:
                entry[k] = _tasks.train(task, data, lr, seed)
                print(
                    f"  grid {task.name} lr={lr:.3g} seed={seed}: {entry[k]:.4f}",
                    flush=True,
                )
    return entry


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", nargs="*", default=None)
    args = parser.parse_args(argv)
    seeds = list(range(1 if args.quick else args.seeds))
    tasks = [t for t in _tasks.TASKS if not args.tasks or t.name in args.tasks]
    if args.quick:
        tasks = tasks[:2]
    RESULTS.mkdir(exist_ok=True)
    cache_path = RESULTS / "suggestion_grid.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    rows = []
    regrets: dict[str, list[float]] = {r: [] for r in (*RULES, OURS)}
    costs = []
    started = time.time()
    for task in tasks:
        data = _tasks.load(task.data)
        grid = grid_accuracies(task, data, seeds, cache)
        cache_path.write_text(json.dumps(cache, indent=1))
        lrs = task.grid_lrs()
        mean_acc = [np.mean([grid[f"{lr:.6g}|{s}"] for s in seeds]) for lr in lrs]
        best = int(np.argmax(mean_acc))
        oracle = float(mean_acc[best])
        budget = _tasks.budget_steps(task, data)
        suggested: dict[str, list[float]] = {r: [] for r in (*RULES, OURS)}
        accs: dict[str, list[float]] = {r: [] for r in (*RULES, OURS)}
        (x, y), _ = data
        for seed in seeds:
            model = _tasks.compiled(task, x.shape[1:], seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                keras.utils.set_random_seed(seed)
                result = keras_lr.lr_range_test(
                    model, x, y, batch_size=task.batch_size, verbose=0
                )
                for rule in RULES:
                    suggested[rule].append(result.suggestion(rule, warn=False))
                keras.utils.set_random_seed(seed)
                search = keras_lr.find_best_learning_rate(
                    model,
                    (x, y),
                    batch_size=task.batch_size,
                    verbose=0,
                    return_details=True,
                    seed=seed,
                )
            suggested[OURS].append(search.learning_rate)
            # Scoring the race on held-out samples costs forward passes,
            # counted as a third of a training step per batch.
            n_held = min(round(0.1 * len(x)), MAX_HOLDOUT_SAMPLES)
            scoring = len(search.candidates) * n_held / (3 * task.batch_size)
            costs.append((search.steps + scoring) / (len(lrs) * budget))
            for rule, values in suggested.items():
                accs[rule].append(train_cached(task, data, values[-1], seed, cache))
            cache_path.write_text(json.dumps(cache, indent=1))
        for rule in (*RULES, OURS):
            acc = float(np.mean(accs[rule]))
            regret = 100 * (oracle - acc)
            regrets[rule].append(regret)
            rows.append(
                (
                    task.name + (" (held out)" if task.held_out else ""),
                    rule,
                    float(np.exp(np.mean(np.log(suggested[rule])))),
                    acc,
                    regret,
                )
            )
        rows.append((rows[-1][0], "oracle (grid)", float(lrs[best]), oracle, 0.0))
        print(
            f"[{time.time() - started:.0f} s] {task.name}: oracle lr={lrs[best]:.3g} "
            f"acc={oracle:.4f}",
            flush=True,
        )

    lines = [
        "| task | rule | lr (geo-mean over seeds) | val. accuracy | regret (points) |",
        "|---|---|---|---|---|",
    ]
    for name, rule, lr, acc, regret in rows:
        lines.append(f"| {name} | {rule} | {lr:.3g} | {acc:.4f} | {regret:.2f} |")
    lines += [
        "",
        "| rule | mean regret (points) | worst regret (points) |",
        "|---|---|---|",
    ]
    held = [t.held_out for t in tasks]
    if any(held) and not all(held):
        lines[-2:] = [
            "| rule | mean regret (points) | worst regret (points) "
            "| mean regret, held-out tasks | mean regret, other tasks |",
            "|---|---|---|---|---|",
        ]
    for rule in (*RULES, OURS):
        r = np.array(regrets[rule])
        row = f"| {rule} | {r.mean():.2f} | {r.max():.2f} |"
        if any(held) and not all(held):
            mask = np.array(held)
            row += f" {r[mask].mean():.2f} | {r[~mask].mean():.2f} |"
        lines.append(row)
    cost = float(np.mean(costs))
    lines += [
        "",
        f"`find_best_learning_rate` cost: {100 * cost:.1f}% of the grid's compute "
        f"(mean over tasks and seeds; range test plus race in training steps, plus the "
        f"held-out scoring's forward passes at a third of a step per batch).",
        "",
        f"Machine: {platform.machine()} {platform.processor() or ''}, "
        f"Keras {keras.__version__}, backend {keras.backend.backend()}; seeds {seeds}; "
        f"wall time {time.time() - started:.0f} s.",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.quick and not args.tasks:  # a subset only prints its table
        (RESULTS / "suggestion_quality.md").write_text(
            "Command: `python benchmarks/suggestion_quality.py`\n\n" + table + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
