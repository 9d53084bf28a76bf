"""Range test -> `OneCycle.from_range_test` -> train, on Fashion-MNIST.

1. An LR range test (`keras_lr.lr_range_test`) on a small CNN with SGD
   (momentum 0.9) suggests a rate and a range.
2. `keras_lr.schedules.OneCycle.from_range_test` builds a 1cycle policy whose
   peak is the top of that range, with momentum cycled 0.95 -> 0.85 -> 0.95
   (`keras_lr.optimizers.SGD`).
3. The same model, from the same initial weights, trains for the same number
   of epochs (a) with the 1cycle policy and (b) at the constant suggested
   rate; the test accuracies are printed side by side.

    python examples/one_cycle_fashion_mnist.py            # full data
    python examples/one_cycle_fashion_mnist.py --smoke    # < 30 s (CI)
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_lr
import keras_lr.data
from keras_lr.schedules import OneCycle


def positive(text: str) -> int:
    """An argparse `type`: an integer >= 1 (``--epochs 0`` is refused, not 3)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def load(smoke: bool):
    if smoke:
        (x, y), (xt, yt) = keras_lr.data.load_fashion_mnist_sample()
    else:
        (x, y), (xt, yt) = keras_lr.data.load_fashion_mnist()

    def prep(a):
        return a[..., None].astype("float32") / 255.0

    return (prep(x), y.astype("int32")), (prep(xt), yt.astype("int32"))


def make_model(optimizer, seed: int, width: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=1 if keras.backend.backend() == "torch" else 16,
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run, < 30 s")
    parser.add_argument(
        "--epochs", type=positive, default=None, help="default 4 (smoke: 1)"
    )
    parser.add_argument(
        "--seeds", type=positive, default=1, help="seeds to average over (default 1)"
    )
    args = parser.parse_args()
    smoke = args.smoke
    epochs = args.epochs or (1 if smoke else 4)
    batch, width = (64, 8) if smoke else (128, 16)
    try:
        (x, y), (xt, yt) = load(smoke)
    except FileNotFoundError as error:
        parser.error(f"{error} Or run with --smoke (the embedded sample).")
    # `fit` trains on the last, partial batch of each epoch too.
    steps_per_epoch = math.ceil(len(x) / batch)
    steps = epochs * steps_per_epoch
    print(f"{len(x)} training images, {epochs} epoch(s) of {steps_per_epoch} steps")

    rows = []
    for seed in range(args.seeds):
        # 1. Range test (the model is left as it was).
        model = make_model(keras.optimizers.SGD(0.01, momentum=0.9), seed, width)
        result = keras_lr.lr_range_test(
            model,
            x,
            y,
            batch_size=batch,
            start_lr=1e-5,
            end_lr=10.0,
            num_steps=40 if smoke else 150,
            verbose=0,
        )
        suggestion = result.suggestion(warn=False)
        low, high = result.suggest_range()
        print(
            f"seed {seed}: suggestion {suggestion:.3g}, range [{low:.3g}, {high:.3g}]"
        )

        # 2. 1cycle from the range test, momentum cycled opposite to the rate.
        schedule = OneCycle.from_range_test(result, steps)
        optimizer = keras_lr.optimizers.SGD(schedule, momentum=schedule.momentum())
        accuracies = {}
        for name, opt in (
            ("1cycle", optimizer),
            ("constant", keras.optimizers.SGD(float(suggestion), momentum=0.9)),
        ):
            model = make_model(opt, seed, width)
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
            seconds = time.perf_counter() - start
            _, accuracy = model.evaluate(xt, yt, batch_size=512, verbose=0)
            accuracies[name] = accuracy
            print(f"  {name:>8}: test accuracy {accuracy:.4f} ({seconds:.0f} s)")
        rows.append(
            (seed, suggestion, high, accuracies["1cycle"], accuracies["constant"])
        )

    print("\n| seed | suggested lr | 1cycle max_lr | 1cycle acc | constant acc |")
    print("|---:|---:|---:|---:|---:|")
    for seed, lr, top, a, b in rows:
        print(f"| {seed} | {lr:.3g} | {top:.3g} | {a:.4f} | {b:.4f} |")
    if len(rows) > 1:
        a = np.mean([r[3] for r in rows])
        b = np.mean([r[4] for r in rows])
        print(f"| mean | | | {a:.4f} | {b:.4f} |")


if __name__ == "__main__":
    main()
