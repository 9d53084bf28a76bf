"""Fault injection, false alarms, overhead and memory of `DivergenceDetector`.

One command::

    KERAS_BACKEND=tensorflow python benchmarks/divergence_recovery.py
    KERAS_BACKEND=jax python benchmarks/divergence_recovery.py --gpu  # GPU overhead

Task: a small CNN on a Fashion-MNIST subset (12,000 training images, 5,000
test images), SGD with momentum 0.9 at 0.05, batch 64, 4 epochs. Faults:

- ``nan_batch``: one batch of NaN inputs in the middle of epoch 2;
- ``nan_batch (LossScaleOptimizer)``: the same place, made by NaN sample
  weights (a NaN loss), under a `LossScaleOptimizer`, which skips the step;
- ``lr_spike``: the rate multiplied by 100 for 20 steps in epoch 2;
- ``lr_too_high``: a rate of 2.0 (40x) from the first step; and Adam at
  0.3 (300x its usual 1e-3), against an unperturbed Adam run.

Each fault is run with no guard, with Keras's `TerminateOnNaN` and with
``DivergenceDetector(action="rollback")``, next to the unperturbed run.
Healthy runs (several tasks, rates and batch sizes) count false alarms.
Overhead is the median ratio of the wall time of `fit` with the detector to
a plain `fit`, interleaved over repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np

from keras_lr.callbacks import DivergenceDetector


class Batches(keras.utils.PyDataset):
    """Shuffled batches; optionally NaN inputs in the `nan_call`-th batch served.

    Fit it with ``shuffle=False``: it shuffles itself every epoch.
    """

    def __init__(self, x, y, batch_size, seed=0, nan_call=None, nan_weight_call=None):
        super().__init__()
        self.x, self.y, self.bs = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))
        self.nan_call = nan_call
        self.nan_weight_call = nan_weight_call
        self.calls = 0

    def __len__(self):
        return len(self.x) // self.bs

    def __getitem__(self, i):
        idx = self.order[i * self.bs : (i + 1) * self.bs]
        xb = self.x[idx]
        if self.calls == self.nan_call:
            xb = np.full_like(xb, np.nan)
        weights = None
        if self.nan_weight_call is not None:
            weights = np.ones(len(idx), "float32")
            if self.calls == self.nan_weight_call:
                weights[:] = np.nan
        self.calls += 1
        if weights is None:
            return xb, self.y[idx]
        return xb, self.y[idx], weights

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))


class RateSpike(keras.callbacks.Callback):
    """Multiplies the float learning rate by `factor` for `steps` steps."""

    def __init__(self, start, steps=20, factor=100.0):
        super().__init__()
        self.start, self.steps, self.factor = start, steps, factor
        self.seen = 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen in (self.start, self.start + self.steps):
            lr = self.model.optimizer.learning_rate
            scale = self.factor if self.seen == self.start else 1.0 / self.factor
            lr.assign(float(np.asarray(lr.value)) * scale)
        self.seen += 1


def cnn(lr=0.05, seed=0, optimizer=None):
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
        optimizer=optimizer or keras.optimizers.SGD(lr, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def mlp(lr, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def fashion(n_train, n_test):
    from keras_lr.data import load_fashion_mnist

    (x, y), (xt, yt) = load_fashion_mnist()
    x = x[:n_train, ..., None].astype("float32") / 255.0
    xt = xt[:n_test, ..., None].astype("float32") / 255.0
    return (x, y[:n_train].astype("int32")), (xt, yt[:n_test].astype("int32"))


def finite(model):
    return all(np.all(np.isfinite(w)) for w in model.get_weights())


def accuracy(model, xt, yt):
    if not finite(model):
        return float("nan")
    return float(model.evaluate(xt, yt, verbose=0, return_dict=True)["accuracy"])


#: `--ablation`: the detector with its rate restoration and without it.
ABLATION = [
    "rollback (restore_rate_after='auto')",
    "rollback (restore_rate_after=None)",
]
GUARD_OPTIONS = {
    ABLATION[0]: {"restore_rate_after": "auto"},
    ABLATION[1]: {"restore_rate_after": None},
    "rollback (watch_gradient_norm=True)": {"watch_gradient_norm": True},
}


def fault_runs(
    data, epochs, bs, seed=0, only=None, ablation=False, gradient_norm=False
):
    (x, y), (xt, yt) = data
    steps = len(x) // bs
    mid = steps // 2
    sgd = keras.optimizers.SGD
    adam = keras.optimizers.Adam
    faults = {
        "none (unperturbed)": dict(opt=lambda: sgd(0.05, momentum=0.9)),
        "nan_batch": dict(opt=lambda: sgd(0.05, momentum=0.9), nan_at=steps + mid),
        "nan_batch (LossScaleOptimizer)": dict(
            opt=lambda: keras.optimizers.LossScaleOptimizer(sgd(0.05, momentum=0.9)),
            nan_weight_at=steps + mid,
        ),
        "lr_spike": dict(opt=lambda: sgd(0.05, momentum=0.9), spike=steps + mid),
        "lr_too_high (SGD 2.0)": dict(opt=lambda: sgd(2.0, momentum=0.9)),
        "none (unperturbed, Adam 1e-3)": dict(opt=lambda: adam(1e-3)),
        "lr_too_high (Adam 0.3)": dict(opt=lambda: adam(0.3)),
    }
    rows = []
    for name, f in faults.items():
        if only and name not in only and not name.startswith("none (unperturbed)"):
            continue
        if only and name.startswith("none") and "Adam" in name and "Adam" not in only:
            continue
        guards = ["none", "TerminateOnNaN", "rollback"]
        if name.startswith("none"):
            guards = ["none", "rollback"]
        if ablation:  # the rate restoration on and off, side by side
            guards = ["none"] if name.startswith("none") else ABLATION
        if gradient_norm:  # the gradient-norm watch on and off, side by side
            guards = [*guards, "rollback (watch_gradient_norm=True)"]
        for guard in guards:
            model = cnn(optimizer=f["opt"](), seed=seed)
            cbs = []
            if f.get("spike") is not None:
                cbs.append(RateSpike(f["spike"]))
            det = None
            if guard == "TerminateOnNaN":
                cbs.append(keras.callbacks.TerminateOnNaN())
            elif guard.startswith("rollback"):
                det = DivergenceDetector(
                    action="rollback", verbose=0, **GUARD_OPTIONS.get(guard, {})
                )
                cbs.append(det)
            data_seq = Batches(
                x,
                y,
                bs,
                seed=100 + seed,
                nan_call=f.get("nan_at"),
                nan_weight_call=f.get("nan_weight_at"),
            )
            t0 = time.perf_counter()
            hist = model.fit(
                data_seq, epochs=epochs, shuffle=False, callbacks=cbs, verbose=0
            )
            nan_at = f.get("nan_at", f.get("nan_weight_at"))
            if nan_at is not None:
                assert data_seq.calls > nan_at, "the NaN batch was not served"
            wall = time.perf_counter() - t0
            ran = len(hist.history["loss"])
            rows.append(
                {
                    "seed": seed,
                    "fault": name,
                    "guard": guard,
                    "epochs_run": f"{ran}/{epochs}",
                    "finite": finite(model),
                    "acc": accuracy(model, xt, yt),
                    "events": len(det.events) if det else "",
                    "actions": ",".join(e["action"] for e in det.events) if det else "",
                    "first event step": det.events[0]["step"]
                    if det and det.events
                    else "",
                    "final_lr": float(
                        np.asarray(
                            keras.ops.convert_to_numpy(model.optimizer.learning_rate)
                        )
                    ),
                    "wall_s": wall,
                }
            )
            print(rows[-1], flush=True)
    return rows


def healthy_runs(data, epochs):
    """False alarms: detector events over healthy runs of the benchmark tasks."""
    (x, y), _ = data
    from sklearn.datasets import load_digits

    digits = load_digits()
    xd = (digits.data / 16.0).astype("float32")
    yd = digits.target.astype("int32")
    runs = []
    for lr in (0.01, 0.05):
        for bs in (16, 64):
            runs.append(
                (f"fashion CNN, SGD {lr}, batch {bs}", lambda lr=lr: cnn(lr), x, y, bs)
            )
    adam = keras.optimizers.Adam
    runs.append(
        (
            "fashion CNN, Adam 1e-3, batch 32",
            lambda: cnn(optimizer=adam(1e-3)),
            x,
            y,
            32,
        )
    )
    for lr in (1e-3, 1e-2):
        for bs in (8, 32):
            runs.append(
                (
                    f"digits MLP, Adam {lr}, batch {bs}",
                    lambda lr=lr: mlp(lr),
                    xd,
                    yd,
                    bs,
                )
            )
    rows = []
    for name, make, xs, ys, bs in runs:
        model = make()
        det = DivergenceDetector(action="rollback", verbose=0)
        ep = epochs if xs is x else 4 * epochs
        model.fit(xs, ys, batch_size=bs, epochs=ep, callbacks=[det], verbose=0)
        steps = ep * (len(xs) // bs + (len(xs) % bs > 0))
        rows.append({"run": name, "steps": steps, "events": len(det.events)})
        print(rows[-1], flush=True)
    return rows


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (no batch hook: async dispatch is kept)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def timed(fn, acc):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[0] += time.perf_counter() - t0

    return wrapper


class _SyncSnapshots(DivergenceDetector):
    """The detector with every snapshot read at once (as before async JAX
    snapshots): the `--compare-sync` baseline."""

    def _has_live_state(self):
        return False


class _GradNormDetector(DivergenceDetector):
    """The detector with ``watch_gradient_norm=True`` (`--gradient-norm`)."""

    def __init__(self, **kwargs):
        super().__init__(watch_gradient_norm=True, **kwargs)


def overhead(data, repeats, spe, epochs, bs, compare_sync=False, gradient_norm=False):
    """Median over interleaved (ABBA) repeats of detector time / plain time.

    Two ratios: whole `fit` calls (tracing, set-up and all), and the steady
    state (epochs after the first). With `compare_sync`, a third run per
    repeat uses synchronous snapshots (`_SyncSnapshots`); with
    `gradient_norm`, one more the detector with ``watch_gradient_norm=True``.
    """
    (x, y), _ = data
    fit_ratios, epoch_ratios, fits, nbytes, state = [], [], {}, 0, 0
    sync_fit_ratios, sync_epoch_ratios = [], []
    grad_fit_ratios, grad_epoch_ratios = [], []
    hook_shares = []
    modes = ["plain", "detector"] + (["detector_sync"] if compare_sync else [])
    modes += ["detector_grad"] if gradient_norm else []
    for r in range(repeats + 1):
        times, epoch_times = {}, {}
        for mode in modes if r % 2 == 0 else modes[::-1]:
            model = cnn()
            model.compile(
                optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
                steps_per_execution=spe,
            )
            timer = EpochTimer()
            det = {
                "detector": DivergenceDetector,
                "detector_sync": _SyncSnapshots,
                "detector_grad": _GradNormDetector,
            }.get(mode)
            det = det(verbose=0) if det is not None else None
            hook_time = [0.0]
            if det is not None:
                for hook in ("on_train_begin", "on_train_batch_begin", "on_epoch_end"):
                    setattr(det, hook, timed(getattr(det, hook), hook_time))
            cbs = [timer] + ([det] if det else [])
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=bs, epochs=epochs, callbacks=cbs, verbose=0)
            times[mode] = time.perf_counter() - t0
            epoch_times[mode] = sum(timer.times[1:])
            if mode == "detector":
                hook_shares.append(hook_time[0] / times[mode])
                nbytes = det.snapshot_nbytes
                state = sum(
                    np.asarray(keras.ops.convert_to_numpy(v.value)).nbytes
                    for v in list(model.variables) + list(model.optimizer.variables)
                )
        if r == 0:
            continue  # warm-up
        for mode in times:
            fits.setdefault(mode, []).append(times[mode])
        fit_ratios.append(times["detector"] / times["plain"])
        epoch_ratios.append(epoch_times["detector"] / epoch_times["plain"])
        if compare_sync:
            sync_fit_ratios.append(times["detector_sync"] / times["plain"])
            sync_epoch_ratios.append(
                epoch_times["detector_sync"] / epoch_times["plain"]
            )
        if gradient_norm:
            grad_fit_ratios.append(times["detector_grad"] / times["plain"])
            grad_epoch_ratios.append(
                epoch_times["detector_grad"] / epoch_times["plain"]
            )
        print(times, epoch_times, flush=True)
    sync = {}
    if gradient_norm:
        sync["with gradient norms: overhead, whole fit (%)"] = 100 * (
            statistics.median(grad_fit_ratios) - 1
        )
        sync["with gradient norms: overhead, epochs 2+ (%)"] = 100 * (
            statistics.median(grad_epoch_ratios) - 1
        )
    if compare_sync:
        sync |= {
            "sync snapshots: overhead, whole fit (%)": 100
            * (statistics.median(sync_fit_ratios) - 1),
            "sync snapshots: overhead, epochs 2+ (%)": 100
            * (statistics.median(sync_epoch_ratios) - 1),
        }
    return {
        "backend": keras.backend.backend(),
        "steps_per_execution": spe,
        "plain fit (s, median)": statistics.median(fits["plain"]),
        "detector fit (s, median)": statistics.median(fits["detector"]),
        "overhead, whole fit (%)": 100 * (statistics.median(fit_ratios) - 1),
        "overhead, epochs 2+ (%)": 100 * (statistics.median(epoch_ratios) - 1),
        "overhead, fastest fit vs fastest fit (%)": 100
        * (min(fits["detector"]) / min(fits["plain"]) - 1),
        "time in the detector's hooks (% of its fit)": 100
        * statistics.median(hook_shares),
        **sync,
        "snapshot bytes": nbytes,
        "weights + optimizer bytes": state,
    }


def summarize(rows):
    def base_acc(fault):
        key = "Adam" if "Adam" in fault else None
        sel = [
            r["acc"]
            for r in rows
            if r["fault"].startswith("none")
            and r["guard"] == "none"
            and (("Adam" in r["fault"]) == (key is not None))
        ]
        return float(np.mean(sel))

    out = []
    keys = []
    for r in rows:
        if (r["fault"], r["guard"]) not in keys:
            keys.append((r["fault"], r["guard"]))
    for fault, guard in keys:
        sel = [r for r in rows if r["fault"] == fault and r["guard"] == guard]
        accs = np.array([r["acc"] for r in sel], dtype=float)
        mean = float(np.mean(accs)) if np.all(np.isfinite(accs)) else float("nan")
        out.append(
            {
                "fault": fault,
                "guard": guard,
                "runs": len(sel),
                "finite weights": sum(r["finite"] for r in sel),
                "stopped early": sum(
                    r["epochs_run"].split("/")[0] != r["epochs_run"].split("/")[1]
                    for r in sel
                ),
                "mean test acc": mean,
                "vs unperturbed (points)": 100 * (mean - base_acc(fault)),
                "events": "" if guard != "rollback" else sum(r["events"] for r in sel),
            }
        )
    return out


def table(rows):
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = []
        for k in keys:
            v = row[k]
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="overhead only, spe=16")
    p.add_argument(
        "--compare-sync",
        action="store_true",
        help="with --gpu: also time synchronous snapshots (the earlier way)",
    )
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train", type=int, default=12000)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--faults", default="", help="comma list of fault names")
    p.add_argument("--skip", default="", help="comma list: faults,healthy,overhead")
    p.add_argument(
        "--ablation",
        action="store_true",
        help="faults only: rollback with and without restore_rate_after",
    )
    p.add_argument(
        "--gradient-norm",
        action="store_true",
        help="also run the detector with watch_gradient_norm=True (faults, overhead)",
    )
    args = p.parse_args()
    skip = set(args.skip.split(","))
    print(f"backend={keras.backend.backend()}, keras {keras.__version__}")
    data = fashion(args.train, 5000)
    if args.gpu:
        res = overhead(
            data,
            args.repeats,
            spe=16,
            epochs=args.epochs,
            bs=64,
            compare_sync=args.compare_sync,
            gradient_norm=args.gradient_norm,
        )
        print(table([res]))
        return
    if "faults" not in skip:
        rows = []
        for seed in range(args.seeds):
            only = set(filter(None, args.faults.split(",")))
            rows += fault_runs(
                data, args.epochs, 64, seed, only, args.ablation, args.gradient_norm
            )
        print("\n## Fault injection, every run\n")
        print(table(rows))
        print("\n## Fault injection, summary over seeds\n")
        print(table(summarize(rows)))
    if "healthy" not in skip:
        print("\n## False alarms on healthy runs\n")
        print(table(healthy_runs(data, args.epochs)))
    if "overhead" not in skip:
        print("\n## Overhead and snapshot memory (steps_per_execution=1)\n")
        res = overhead(
            data, args.repeats, spe=1, epochs=3, bs=64, gradient_norm=args.gradient_norm
        )
        print(table([res]))


if __name__ == "__main__":
    main()
