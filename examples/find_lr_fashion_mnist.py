"""Find a learning rate for a CNN on Fashion-MNIST, then train with it.

1. `keras_lr.find_best_learning_rate`: an LR range test (its plot is
   written to ``lr_range_test.png``), then candidates read off the curve,
   raced for a few steps each from the same starting state; the chosen
   rate is the vertex of a parabola through the best of them and its
   neighbours, so it need not be one of the raced rates.
2. Training from the restored model at the chosen rate; test accuracy.

The full Fashion-MNIST is read from disk when it is there
(`keras_lr.data.load_fashion_mnist`); otherwise the 4,000 images embedded in
the package are used.

    python examples/find_lr_fashion_mnist.py            # full data, 3 epochs
    python examples/find_lr_fashion_mnist.py --smoke    # embedded sample, seconds
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_lr
from keras_lr.data import load_fashion_mnist, load_fashion_mnist_sample


def positive(text: str) -> int:
    """An argparse `type`: an integer >= 1 (``--epochs 0`` is refused, not 3)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def load(smoke: bool):
    """Images as float32 NHWC in [0, 1], labels as int, and the source's name."""
    source = "embedded sample"
    if smoke:
        (x, y), (xt, yt) = load_fashion_mnist_sample()
    else:
        try:
            (x, y), (xt, yt) = load_fashion_mnist()
            source = "full Fashion-MNIST"
        except FileNotFoundError:
            (x, y), (xt, yt) = load_fashion_mnist_sample()

    def prep(images):
        return (images[..., None] / np.float32(255.0)).astype("float32")

    return (prep(x), y.astype("int32")), (prep(xt), yt.astype("int32")), source


def build_model(seed: int = 0) -> keras.Model:
    """A small CNN, compiled with SGD + momentum (the rate is what we look for).

    BatchNormalization uses momentum 0.9 so that its moving statistics keep
    up with the weights on short runs (Keras's 0.99 lags for ~500 steps).
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, embedded data")
    parser.add_argument(
        "--epochs", type=positive, default=None, help="default 3 (smoke: 2)"
    )
    parser.add_argument("--batch-size", type=positive, default=64, help="default 64")
    parser.add_argument(
        "--output", default="lr_range_test.png", help="the range test's plot"
    )
    args = parser.parse_args(argv)

    (x, y), (xt, yt), source = load(args.smoke)
    epochs = args.epochs or (2 if args.smoke else 3)
    steps = 60 if args.smoke else 100
    print(f"Data: {source}, {len(x)} training and {len(xt)} test images")

    model = build_model(seed=0)
    started = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_lr.RangeTestWarning)
        search = keras_lr.find_best_learning_rate(
            model,
            (x, y),
            batch_size=args.batch_size,
            num_steps=steps,
            return_details=True,
            verbose=0,
        )
        result = search.range_test
        print(f"Range test ({len(result)} steps): curve rule {result.suggestion():.3g}")
        result.plot().savefig(args.output, dpi=90)
    print(f"Plot written to {args.output}")
    raced = ", ".join(
        f"{lr:.3g}: {score:.3f}" for lr, score in zip(search.candidates, search.scores)
    )
    print(f"Raced (rate: loss) {raced}")
    print(
        f"Chosen learning rate: {search.learning_rate:.3g} "
        f"(search took {time.time() - started:.1f} s)"
    )

    model.optimizer.learning_rate = search.learning_rate
    model.fit(x, y, batch_size=args.batch_size, epochs=epochs, verbose=0)
    loss, accuracy = model.evaluate(xt, yt, batch_size=512, verbose=0)
    print(
        f"After {epochs} epoch(s): test loss {loss:.3f}, test accuracy {accuracy:.3f}"
    )
    return {"learning_rate": search.learning_rate, "accuracy": float(accuracy)}


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    main()
