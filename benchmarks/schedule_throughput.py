"""Throughput of `fit` with each keras_lr schedule against a constant rate.

A small CNN on Fashion-MNIST, `steps_per_execution=16`. Every configuration
is compiled and warmed up once, then timed epochs run interleaved (one epoch
of each configuration per round, the order shuffled every round) and the
median epoch time is kept; the table shows throughput relative to the
constant rate of the same optimizer, from wall-clock time and from the
process's CPU time (steadier on a shared machine: other processes'
load slows the wall clock, not this process's CPU work). Momentum cycling
(keras_lr.optimizers
with a momentum/beta_1 schedule) is compared with the Keras optimizer with
the same rate schedule and a constant momentum.

    python benchmarks/schedule_throughput.py                 # TF, CPU
    KERAS_BACKEND=jax python benchmarks/schedule_throughput.py --gpu
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import keras_lr
import keras_lr.data
from keras_lr import schedules as S


def load(n_train: int):
    try:
        (x, y), _ = keras_lr.data.load_fashion_mnist()
    except FileNotFoundError:
        (x, y), _ = keras_lr.data.load_fashion_mnist_sample()
    x = x[:n_train, ..., None].astype("float32") / 255.0
    return x, y[:n_train].astype("int32")


def build(optimizer, spe: int, width: int, jit: bool | str = "auto"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(width, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(2 * width, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=spe,
        jit_compile=jit,
    )
    return model


def schedule_cost_us(schedule, jit: bool, n: int = 20_000) -> float:
    """Compiled cost of evaluating `schedule` once per step, in microseconds.

    A compiled loop of `n` iterations evaluates the schedule at the loop
    counter (int64 on TF, int32 on JAX, as the optimizer's counter) and sums
    the values; an identical loop summing the counter is subtracted. This is
    the schedule's share of a train step, free of the noise of a whole `fit`
    (compiled as the model's train step is: XLA or not, per `jit`).
    """
    from keras import ops

    dtype = "int32" if keras.backend.backend() == "jax" else "int64"

    def loop(with_schedule: bool):
        def body(i, acc):
            step = ops.cast(i, dtype)
            if with_schedule:
                return acc + ops.cast(schedule(step), "float32")
            return acc + ops.cast(step, "float32") * 1e-9

        return lambda: ops.fori_loop(0, n, body, ops.zeros((), "float32"))

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def compile_(f):
            return tf.function(f, jit_compile=jit)
    elif backend == "jax":
        import jax

        def compile_(f):
            return jax.jit(f)
    else:
        return float("nan")
    costs = []
    for with_schedule in (True, False):
        fn = compile_(loop(with_schedule))
        keras.ops.convert_to_numpy(fn())  # compile
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            keras.ops.convert_to_numpy(fn())
            best = min(best, time.perf_counter() - start)
        costs.append(best)
    return max(costs[0] - costs[1], 0.0) / n * 1e6


def configurations(total: int):
    """name -> (baseline name, optimizer factory)."""

    def sgd(lr, **kw):
        return lambda: keras.optimizers.SGD(lr, **kw)

    one = S.OneCycle(0.05, total)
    warm = max(1, total // 10)
    cyc = S.CyclicLR(0.005, 0.05, max(total // 8, 1))
    configs = {
        "constant (SGD)": (None, sgd(0.05)),
        "CyclicLR": ("constant (SGD)", sgd(cyc)),
        "OneCycle": ("constant (SGD)", sgd(one)),
        "Warmup(CosineRestarts)": (
            "constant (SGD)",
            sgd(S.Warmup(S.CosineRestarts(0.05, total // 8), warm)),
        ),
        "WarmupCosineDecay": (
            "constant (SGD)",
            sgd(S.WarmupCosineDecay(0.05, total, warm)),
        ),
        "WarmupStableDecay": (
            "constant (SGD)",
            sgd(S.WarmupStableDecay(0.05, total, warm)),
        ),
        "InverseSqrt": ("constant (SGD)", sgd(S.InverseSqrt(0.05, warm))),
        "Join": (
            "constant (SGD)",
            sgd(S.Join([S.InverseSqrt(0.05, warm), one], [total // 2])),
        ),
        "Scaled(OneCycle)": ("constant (SGD)", sgd(S.Scaled(one))),
        "SGD momentum 0.9 + OneCycle": ("constant (SGD)", sgd(one, momentum=0.9)),
        "SGD cycled momentum + OneCycle": (
            "SGD momentum 0.9 + OneCycle",
            lambda: keras_lr.optimizers.SGD(one, momentum=one.momentum()),
        ),
        "Adam + OneCycle": (None, lambda: keras.optimizers.Adam(one)),
        "Adam cycled beta_1 + OneCycle": (
            "Adam + OneCycle",
            lambda: keras_lr.optimizers.Adam(one, beta_1=one.momentum()),
        ),
    }
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="bigger run for a GPU")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="a few seconds (CI)")
    parser.add_argument("--jit", action="store_true", help="jit_compile=True (XLA)")
    args = parser.parse_args()
    spe = 16
    if args.gpu:
        n_train, batch, width, repeats = 60_000, 256, 32, args.repeats or 9
    elif args.quick:
        n_train, batch, width, repeats = 2048, 128, 8, args.repeats or 2
    else:
        n_train, batch, width, repeats = 12_800, 128, 8, args.repeats or 11
    x, y = load(n_train)
    steps = len(x) // batch
    x, y = x[: steps * batch], y[: steps * batch]
    configs = configurations(total=steps * (repeats + 1))
    models = {}
    for name, (_, make) in configs.items():
        model = build(make(), spe, width, True if args.jit else "auto")
        if name.startswith("Scaled"):
            # As keras_lr's callbacks do during fit: the factor is optimizer
            # state (on JAX, an input of the compiled step).
            S.track_scaled(model.optimizer)
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # trace
        models[name] = model
    times: dict[str, list[float]] = {name: [] for name in configs}
    cpu_times: dict[str, list[float]] = {name: [] for name in configs}
    rng = random.Random(0)
    for _ in range(repeats):
        order = list(configs)
        rng.shuffle(order)
        for name in order:
            start, cpu = time.perf_counter(), time.process_time()
            models[name].fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu)
    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    cpu_median = {name: statistics.median(t) for name, t in cpu_times.items()}
    cost = {}
    for name, (_, make) in configs.items():
        opt = make()
        jit = bool(models[name].jit_compile)
        lr = opt._learning_rate
        parts = (
            [lr]
            if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule)
            else []
        )
        momentum = getattr(opt, "momentum", getattr(opt, "beta_1", None))
        if isinstance(momentum, keras.optimizers.schedules.LearningRateSchedule):
            # Evaluated once per step (keras_lr.optimizers cache it).
            parts.append(momentum)
        cost[name] = sum(schedule_cost_us(p, jit) for p in parts) if parts else 0.0
    print(
        f"\nbackend={keras.backend.backend()} keras={keras.__version__} "
        f"device={'GPU' if args.gpu else 'CPU'} cpus={os.cpu_count()} "
        f"python={platform.python_version()} steps/epoch={steps} batch={batch} "
        f"steps_per_execution={spe} repeats={repeats} "
        f"jit_compile={models['constant (SGD)'].jit_compile}\n"
    )
    print(
        "| configuration | median epoch (s) | steps/s | vs baseline: wall median "
        "| wall best | CPU median | in-graph cost (µs/step) | implied | baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, (baseline, _) in configs.items():

        def ratio(d, name=name, baseline=baseline):
            return d[baseline] / d[name] if baseline else 1.0

        step_us = median[baseline or name] / steps * 1e6
        extra = cost[name] - (cost[baseline] if baseline else 0.0)
        implied = step_us / (step_us + extra) if baseline else 1.0
        print(
            f"| {name} | {median[name]:.3f} | {steps / median[name]:.0f} | "
            f"{ratio(median):.3f} | {ratio(best):.3f} | {ratio(cpu_median):.3f} | "
            f"{cost[name]:.2f} | {implied:.4f} | {baseline or '-'} |"
        )


if __name__ == "__main__":
    main()
