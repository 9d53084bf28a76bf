"""Search the learning rate and batch size of a Fashion-MNIST classifier.

    python examples/tune_fashion_mnist.py            # full data from disk
    python examples/tune_fashion_mnist.py --smoke    # embedded sample, < 60 s
    KERAS_BACKEND=jax python examples/tune_fashion_mnist.py --trials 20

Runs `keras_lr.tuner.ImageClassifierHyperModel` under KerasTuner's Bayesian
optimisation, on the default strategy (several GPUs: `MirroredStrategy` on
TensorFlow, `keras.distribution.DataParallel` on JAX), and saves a plot of
the trials over learning rate × batch size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_tuner
import numpy as np

from keras_lr import tuner
from keras_lr.data import load_fashion_mnist, load_fashion_mnist_sample


def positive(text: str) -> int:
    """An argparse `type`: an integer >= 1 (``--epochs 0`` is refused, not 3)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run for CI")
    parser.add_argument(
        "--trials", type=positive, default=None, help="default 12 (smoke: 2)"
    )
    parser.add_argument(
        "--epochs", type=positive, default=None, help="default 3 (smoke: 1)"
    )
    parser.add_argument(
        "--directory",
        default=None,
        help="KerasTuner's folder (default: a new temporary one)",
    )
    parser.add_argument(
        "--plot", default="tune_fashion_mnist.png", help="the trials' plot"
    )
    args = parser.parse_args()

    if args.smoke:
        (x, y), (xt, yt) = load_fashion_mnist_sample()
        x, y, xt, yt = x[:512, ::2, ::2], y[:512], xt[:128, ::2, ::2], yt[:128]
        trials, epochs, batch_sizes = args.trials or 2, args.epochs or 1, (32, 64)
        widths, depths, stages = (4,), (1,), 2
    else:
        try:
            (x, y), (xt, yt) = load_fashion_mnist()
        except FileNotFoundError as error:
            parser.error(f"{error} Or run with --smoke (the embedded sample).")
        trials, epochs = args.trials or 12, args.epochs or 3
        batch_sizes = (64, 128, 256, 512)
        widths, depths, stages = (16, 32), (1, 2), 3
    x = (x[..., None] / 255.0).astype("float32")
    xt = (xt[..., None] / 255.0).astype("float32")
    y, yt = y.astype("int32"), yt.astype("int32")

    distribution = tuner.data_parallel_distribution()  # JAX, several devices
    if distribution is not None:
        keras.distribution.set_distribution(distribution)
    hm = tuner.ImageClassifierHyperModel(
        x.shape[1:], 10, widths=widths, depths=depths, stages=stages,
        batch_sizes=batch_sizes, lr_range=(1e-4, 1e-2), optimizer="adam",
    )  # fmt: skip
    directory = args.directory or tempfile.mkdtemp(prefix="keras_lr_tune_")
    search = keras_tuner.BayesianOptimization(
        hm, objective="val_accuracy", max_trials=trials, directory=directory,
        project_name="fashion_mnist", distribution_strategy=hm.distribution_strategy,
        seed=0,
    )  # fmt: skip
    start = time.perf_counter()
    search.search(x, y, validation_data=(xt, yt), epochs=epochs, verbose=0)
    best = search.oracle.get_best_trials(1)[0]
    print(f"backend={keras.backend.backend()} trials={trials} "
          f"time={time.perf_counter() - start:.1f}s")  # fmt: skip
    print(f"best val_accuracy={best.score:.4f} with {best.hyperparameters.values}")
    lr = best.metrics.get_last_value("learning_rate")
    batch = best.metrics.get_last_value("global_batch_size")
    print(f"learning_rate={lr:.3g} global_batch={batch:.0f}")
    fig = tuner.plot_search(search)
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")
    assert np.isfinite(best.score)


if __name__ == "__main__":
    main()
