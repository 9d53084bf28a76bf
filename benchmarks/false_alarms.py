"""False alarms of `DivergenceDetector` on healthy runs of the diagnosis tasks.

One command::

    KERAS_BACKEND=tensorflow python benchmarks/false_alarms.py

Every task of `benchmarks/diagnosis_accuracy.py` (models, optimizers and batch
sizes on Fashion-MNIST and digits; ``--tasks`` picks some) is trained at the lowest and the
highest rate its grid marks good (final validation accuracy within 2 points
of the best, from `benchmarks/results/diagnosis_runs.json`), with the
detector at its defaults. A healthy run should cause no event: the table
counts the steps watched and the events.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402


def main() -> None:
    import argparse

    import diagnosis_accuracy as da

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--gradient-norm",
        action="store_true",
        help="run the detector with watch_gradient_norm=True",
    )
    parser.add_argument("--tasks", default="", help="comma list of task names")
    args = parser.parse_args()
    only = set(filter(None, args.tasks.split(",")))
    import keras

    from keras_lr.callbacks import DivergenceDetector

    runs = json.loads(da.RUNS.read_text())
    print(
        f"backend={keras.backend.backend()}, keras {keras.__version__}, "
        f"watch_gradient_norm={args.gradient_norm}\n"
    )
    print("| task | rate | steps | events | val. accuracy |\n|---|---|---|---|---|")
    total_steps = total_events = 0
    start = time.perf_counter()
    for name, (make, opt, data, epochs, bs, _) in da.load_tasks().items():
        if name not in runs or (only and name not in only):
            continue
        task_runs = runs[name]
        good = sorted(
            r["lr"] for r, lab in zip(task_runs, da.label(task_runs)) if lab == "good"
        )
        (x, y), (xv, yv) = data
        for lr in sorted({good[0], good[-1]}):
            keras.utils.set_random_seed(0)
            model = make()
            model.compile(
                optimizer=opt(lr),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )
            detector = DivergenceDetector(
                verbose=0, watch_gradient_norm=args.gradient_norm
            )
            keras.utils.set_random_seed(1)
            history = model.fit(
                x,
                y,
                batch_size=bs,
                epochs=epochs,
                validation_data=(xv, yv),
                callbacks=[detector],
                verbose=0,
            )
            steps = epochs * int(np.ceil(len(x) / bs))
            total_steps += steps
            total_events += len(detector.events)
            print(
                f"| {name} | {lr:.3g} | {steps} | {len(detector.events)} | "
                f"{history.history['val_accuracy'][-1]:.3f} |",
                flush=True,
            )
    print(
        f"\n{total_events} events in {total_steps} healthy steps "
        f"({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
