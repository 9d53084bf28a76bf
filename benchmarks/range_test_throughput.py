"""Range-test throughput against a plain `fit` of the same steps.

A ResNet-style CNN on 32x32x3 images (the embedded Fashion-MNIST sample,
padded to 32x32 and repeated over 3 channels), `steps_per_execution=16`.
Three ways of training, interleaved and repeated:

- plain: `model.fit` at a constant rate;
- range test: `model.fit` with `keras_lr.callbacks.LRRangeTest` (the sweep
  in the compiled step, per-step losses in a device buffer read every few
  executions), the machinery `keras_lr.lr_range_test` drives;
- per-batch reader: what peers do, a callback that reads the loss every
  step, which forces `steps_per_execution=1` (the loss of every step must
  reach the host) and a host sync per step.

Throughput is the steady state: steps per second between the end of the
first execution (which traces and compiles the train function) and the end
of the run, read by a callback from the step counter and the clock (two
marks, so Keras's asynchronous dispatch stays on), median over repeats. The one-call costs that are paid once (tracing, the snapshot
and the restore) are reported apart, as the wall time of a whole
`keras_lr.lr_range_test` call next to a whole `fit` of the same steps that
traces its train function anew.

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
from keras_lr import _live
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


class Clock(keras.callbacks.Callback):
    """Steady-state steps per second, from the end of the first execution.

    Two marks only, each after waiting for the device: at the start of the
    second execution and at the end of training. No ``on_*_batch_end``
    hook, so Keras keeps its asynchronous dispatch in every run measured.
    """

    def on_train_begin(self, logs=None):
        self.marks: list[tuple[int, float]] = []
        self.spe = int(self._model.steps_per_execution or 1)

    def _mark(self, step: int) -> None:
        # Wait for the work dispatched so far (no JAX state sync).
        variable = self._model.trainable_variables[0]
        live = _live.live_arrays(self._model, [variable])
        _live.fetch(live if live is not None else [variable.value])
        self.marks.append((step, time.perf_counter()))

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.spe:
            self._mark(int(batch))

    def on_epoch_end(self, epoch, logs=None):
        self._mark(int(self.params["steps"]))

    def steps_per_second(self) -> float:
        (b0, t0), (b1, t1) = self.marks[0], self.marks[-1]
        return (b1 - b0) / (t1 - t0)


def make_model(width, blocks):
    keras.utils.set_random_seed(0)
    model = resnet(width, blocks)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=16,
    )
    return model


def steady(kind: str, model, x, y, batch: int, steps: int) -> float:
    """Steady-state steps per second of one run of `kind`."""
    xs, ys = x[: batch * steps], y[: batch * steps]
    clock = Clock()
    spe = model.steps_per_execution
    callbacks = [clock]
    if kind == "range test":
        finder = keras_lr.callbacks.LRRangeTest(
            start_lr=1e-6, end_lr=1e-3, num_steps=steps, diverge_threshold=1e9
        )
        callbacks = [finder, clock]
    elif kind == "per-batch reader":
        model.steps_per_execution = 1
        callbacks = [PerStepLossReader(), clock]
    model.make_train_function(force=True)
    try:
        model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False,
                  callbacks=callbacks)  # fmt: skip
    finally:
        model.steps_per_execution = spe
    return clock.steps_per_second()


def one_call(kind: str, model, x, y, batch: int, steps: int) -> float:
    """Wall time of a whole call: tracing, training, snapshot and restore."""
    xs, ys = x[: batch * steps], y[: batch * steps]
    start = time.perf_counter()
    if kind == "plain":
        model.make_train_function(force=True)
        model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    else:
        keras_lr.lr_range_test(
            model, xs, ys, batch_size=batch, num_steps=steps, start_lr=1e-6,
            end_lr=1e-3, diverge_threshold=1e9, verbose=0,
        )  # fmt: skip
    _ = keras.ops.convert_to_numpy(model.trainable_variables[0].value)
    return time.perf_counter() - start


def find_best_call(model, x, y, batch: int, steps: int) -> tuple[float, float]:
    """Wall times of a whole `find_best_learning_rate` (sweep of `steps`, a
    race of 4 candidates, scoring on a held-out tenth) and of a plain `fit`
    of as many steps, with a fresh trace."""
    start = time.perf_counter()
    search = keras_lr.find_best_learning_rate(
        model, (x, y), batch_size=batch, num_steps=steps, start_lr=1e-6,
        end_lr=1.0, verbose=0, return_details=True,
    )  # fmt: skip
    _ = keras.ops.convert_to_numpy(model.trainable_variables[0].value)
    search_time = time.perf_counter() - start
    need = batch * search.steps
    reps = -(-need // len(x))
    xs, ys = np.concatenate([x] * reps)[:need], np.concatenate([y] * reps)[:need]
    start = time.perf_counter()
    model.make_train_function(force=True)
    model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    _ = keras.ops.convert_to_numpy(model.trainable_variables[0].value)
    return search_time, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpu", action="store_true", help="GPU settings (batch 256)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--blocks", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-reader", action="store_true")
    parser.add_argument(
        "--find-best",
        action="store_true",
        help="only time whole find_best_learning_rate calls against a plain fit",
    )
    args = parser.parse_args(argv)
    if args.gpu:
        batch, width, blocks, steps = 256, 32, 2, 640
    else:
        batch, width, blocks, steps = 64, 16, 1, 160
    batch = args.batch or batch
    width = args.width or width
    blocks = args.blocks or blocks
    steps = args.steps or steps
    x, y = data(batch, steps)
    model = make_model(width, blocks)
    model.fit(x[: batch * 16], y[: batch * 16], batch_size=batch, verbose=0)  # warm-up
    if args.find_best:
        times = [find_best_call(model, x, y, batch, steps) for _ in range(args.repeats)]
        search = statistics.median(t for t, _ in times)
        plain = statistics.median(t for _, t in times)
        ratios = ", ".join(f"{a / b:.2f}" for a, b in times)
        print(
            f"find_best_learning_rate ({steps}-step sweep, 4 candidates x "
            f"{2 * steps // 4} steps): {search:.2f} s; plain `fit` of the same "
            f"steps with a fresh trace: {plain:.2f} s; ratio {search / plain:.2f} "
            f"(per repeat: {ratios}). Median of {args.repeats}, backend "
            f"{keras.backend.backend()}."
        )
        return 0
    kinds = ["plain", "range test"] + ([] if args.no_reader else ["per-batch reader"])
    rates = {k: [] for k in kinds}
    calls = {k: [] for k in ("plain", "range test")}
    for _ in range(args.repeats):
        for kind in kinds:
            rates[kind].append(steady(kind, model, x, y, batch, steps))
        for kind in calls:
            calls[kind].append(one_call(kind, model, x, y, batch, steps))
    rate = {k: statistics.median(v) for k, v in rates.items()}
    call = {k: statistics.median(v) for k, v in calls.items()}
    lines = [
        "| run | steps/s (steady state) | ratio to plain fit | per-repeat ratios |",
        "|---|---|---|---|",
    ]
    for k in kinds:
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(rates[k], rates["plain"]))
        lines.append(
            f"| {k} | {rate[k]:.1f} | {rate[k] / rate['plain']:.3f} | {ratios} |"
        )
    lines += [
        "",
        f"Whole calls of {steps} steps (median wall time): plain `fit` with a fresh "
        f"trace {call['plain']:.2f} s, `lr_range_test` {call['range test']:.2f} s "
        f"(difference {call['range test'] - call['plain']:+.2f} s: snapshot, "
        "restore and bookkeeping, paid once per call).",
        "",
        f"ResNet-style CNN (width {width}, {blocks} block(s) per stage), batch {batch}, "
        f"32x32x3, steps_per_execution=16 (the per-batch reader: 1); {steps} steps "
        f"per run, median of {args.repeats} interleaved repeats. Keras "
        f"{keras.__version__}, backend {keras.backend.backend()} on "
        f"{'GPU' if args.gpu else 'CPU'} ({platform.machine()}, {os.cpu_count()} cores).",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
