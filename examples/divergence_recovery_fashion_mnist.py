"""Divergence recovery on Fashion-MNIST: a rate spike, rolled back.

A CNN trains with SGD; for 20 steps in the middle of training the learning
rate is multiplied by 100 (a fault injected on purpose). Without a guard the
network dies; `keras_lr.callbacks.DivergenceDetector(action="rollback")`
sees the spike in the per-step loss, restores its last healthy in-memory
snapshot, lowers the rate and goes on. `keras_lr.diagnose` then reads the
history. The full Fashion-MNIST is read from disk when it is there
(`keras_lr.data.load_fashion_mnist`); otherwise the embedded sample is used.

    python examples/divergence_recovery_fashion_mnist.py           # full data
    python examples/divergence_recovery_fashion_mnist.py --smoke   # seconds
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_lr
from keras_lr.data import (
    find_fashion_mnist,
    load_fashion_mnist,
    load_fashion_mnist_sample,
)


def positive(text: str) -> int:
    """An argparse `type`: an integer >= 1 (``--epochs 0`` is refused, not 3)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


class RateSpike(keras.callbacks.Callback):
    """Fault injection: multiplies a float rate by `factor` for `steps` steps."""

    def __init__(self, start: int, steps: int = 20, factor: float = 100.0):
        super().__init__()
        self.start, self.steps, self.factor, self.seen = start, steps, factor, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen in (self.start, self.start + self.steps):
            lr = self.model.optimizer.learning_rate
            up = self.seen == self.start
            lr.assign(
                float(keras.ops.convert_to_numpy(lr))
                * (self.factor if up else 1 / self.factor)
            )
        self.seen += 1


def build(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="embedded sample, seconds")
    parser.add_argument(
        "--epochs", type=positive, default=None, help="default 4 (smoke: 5)"
    )
    args = parser.parse_args(argv)
    if args.smoke or find_fashion_mnist() is None:
        (x, y), (xt, yt) = load_fashion_mnist_sample()
        source = "embedded sample"
    else:
        (x, y), (xt, yt) = load_fashion_mnist()
        source = "full Fashion-MNIST"
    print(f"Data: {source}, {len(x)} training and {len(xt)} test images")
    x = (x[..., None] / np.float32(255)).astype("float32")
    xt = (xt[..., None] / np.float32(255)).astype("float32")
    epochs = args.epochs or (5 if args.smoke else 4)
    batch = 64
    spike_at = (len(x) // batch) * epochs * 3 // 5
    for guard in ("none", "TerminateOnNaN", "DivergenceDetector"):
        model = build()
        callbacks = [RateSpike(spike_at)]
        detector = None
        if guard == "TerminateOnNaN":
            callbacks.append(keras.callbacks.TerminateOnNaN())
        elif guard == "DivergenceDetector":
            detector = keras_lr.callbacks.DivergenceDetector(
                action="rollback", verbose=1
            )
            callbacks.append(detector)
        history = model.fit(
            x, y, batch_size=batch, epochs=epochs, validation_data=(xt, yt),
            callbacks=callbacks, verbose=0,
        )  # fmt: skip
        weights_ok = all(np.all(np.isfinite(w)) for w in model.get_weights())
        _, acc = model.evaluate(xt, yt, verbose=0)
        events = len(detector.events) if detector else "-"
        print(
            f"{guard:>18}: test accuracy {acc:.4f}, finite weights {weights_ok}, "
            f"events {events}"
        )
        if detector is not None:
            print(keras_lr.diagnose(history))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
