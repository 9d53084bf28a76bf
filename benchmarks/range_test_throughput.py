"""Range-test throughput against a plain `fit` of the same steps.

A ResNet-style CNN on 32x32x3 images (the embedded Fashion-MNIST sample,
padded to 32x32 and repeated over 3 channels), `steps_per_execution=16`.
Three ways of running N steps, interleaved and repeated:

- plain: `model.fit` at a constant rate;
- range test: `keras_lr.lr_range_test` (sweep in the compiled step, per-step
  losses in a device buffer read every few executions);
- per-batch reader: what peers do, a callback that reads the loss every
  step, which forces `steps_per_execution=1` (the loss of every step must
  reach the host) and a host sync per step.

Throughput is measured per step at the margin: the time of a run of N2
steps minus that of a run of N1 steps, over N2 - N1. That removes the fixed
costs every run pays once (tracing and compiling the train function, the
snapshot and restore), which the table reports apart.

    python benchmarks/range_test_throughput.py                 # TensorFlow, CPU
    KERAS_BACKEND=jax python benchmarks/range_test_throughput.py --gpu   # GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import keras_lr
from keras_lr.data import load_fashion_mnist_sample

RESULTS = Path(__file__).resolve().parent / "results"


def resnet(width: int, blocks: int) -> keras.Model:
    L = keras.layers
    inputs = keras.Input((32, 32, 3))
    x = L.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for stage in range(3):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            filters = width * 2**stage
            shortcut = x
            y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
            y = L.BatchNormalization()(y)
            y = L.ReLU()(y)
            y = L.Conv2D(filters, 3, padding="same", use_bias=False)(y)
            y = L.BatchNormalization()(y)
            if stride != 1 or shortcut.shape[-1] != filters:
                shortcut = L.Conv2D(filters, 1, strides=stride, use_bias=False)(
                    shortcut
                )
                shortcut = L.BatchNormalization()(shortcut)
            x = L.ReLU()(L.Add()([y, shortcut]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(10)(x))


def data(batch: int, steps: int):
    (x, y), _ = load_fashion_mnist_sample()
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None].repeat(3, axis=-1)
    x = (x / np.float32(255)).astype("float32")
    need = batch * steps
    reps = -(-need // len(x))
    return np.concatenate([x] * reps)[:need], np.concatenate([y] * reps)[:need]


class PerStepLossReader(keras.callbacks.Callback):
    """What peers do: read the loss on the host after every step."""

    def on_train_batch_end(self, batch, logs=None):
        self.last = float(logs["loss"])


def make_model(width, blocks):
    keras.utils.set_random_seed(0)
    model = resnet(width, blocks)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=16,
    )
    return model


def run(kind: str, model, x, y, batch: int, steps: int) -> float:
    xs, ys = x[: batch * steps], y[: batch * steps]
    start = time.perf_counter()
    if kind == "plain":
        model.make_train_function(force=True)
        model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    elif kind == "range test":
        keras_lr.lr_range_test(
            model,
            xs,
            ys,
            batch_size=batch,
            num_steps=steps,
            start_lr=1e-6,
            end_lr=1e-3,
            diverge_threshold=1e9,
            verbose=0,
        )
    else:
        spe = model.steps_per_execution
        model.steps_per_execution = 1
        model.make_train_function(force=True)
        model.fit(
            xs,
            ys,
            batch_size=batch,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[PerStepLossReader()],
        )
        model.steps_per_execution = spe
    _ = keras.ops.convert_to_numpy(model.trainable_variables[0].value)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpu", action="store_true", help="GPU settings (batch 256)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--blocks", type=int, default=None)
    parser.add_argument(
        "--steps", type=int, nargs=2, default=None, metavar=("N1", "N2")
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-reader", action="store_true")
    args = parser.parse_args(argv)
    if args.gpu:
        batch, width, blocks, (n1, n2) = 256, 32, 2, (64, 320)
    else:
        batch, width, blocks, (n1, n2) = 64, 16, 1, (32, 96)
    batch = args.batch or batch
    width = args.width or width
    blocks = args.blocks or blocks
    n1, n2 = args.steps or (n1, n2)
    x, y = data(batch, n2)
    model = make_model(width, blocks)
    model.fit(x[: batch * 16], y[: batch * 16], batch_size=batch, verbose=0)  # warm-up
    kinds = ["plain", "range test"] + ([] if args.no_reader else ["per-batch reader"])
    times = {(k, n): [] for k in kinds for n in (n1, n2)}
    for _ in range(args.repeats):
        for kind in kinds:
            for n in (n1, n2):
                times[(kind, n)].append(run(kind, model, x, y, batch, n))
    med = {key: statistics.median(v) for key, v in times.items()}
    per_step = {k: (med[(k, n2)] - med[(k, n1)]) / (n2 - n1) for k in kinds}
    fixed = {k: med[(k, n1)] - n1 * per_step[k] for k in kinds}
    lines = [
        "| run | steps/s (marginal) | ratio to plain fit | fixed cost per call (s) |",
        "|---|---|---|---|",
    ]
    for k in kinds:
        lines.append(
            f"| {k} | {1 / per_step[k]:.1f} | {per_step['plain'] / per_step[k]:.3f} "
            f"| {fixed[k]:.2f} |"
        )
    device = "GPU" if args.gpu else "CPU"
    lines += [
        "",
        f"ResNet-style CNN (width {width}, {blocks} block(s) per stage), batch {batch}, "
        f"32x32x3, steps_per_execution=16 (the per-batch reader: 1); N1={n1}, N2={n2}, "
        f"median of {args.repeats} interleaved repeats. Keras {keras.__version__}, "
        f"backend {keras.backend.backend()} on {device} ({platform.machine()}, "
        f"{os.cpu_count()} cores).",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
