"""Tests of keras_lr.tuner: real KerasTuner searches, under MirroredStrategy.

The searches over two logical CPU devices run in subprocesses
(`tests/_tuner_worker.py`), since logical devices must be configured before
TensorFlow initialises.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = [
    pytest.mark.tensorflow_only,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow", reason="needs tf.distribute"
    ),
]

keras_tuner = pytest.importorskip("keras_tuner")

from keras_lr import tuner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_tuner_worker.py"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["KERAS_BACKEND"] = "tensorflow"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(extra)
    return env


def _run_worker(args: list[str], timeout: float = 240, **extra: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(WORKER), *args],
        env=_env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _check_trial(trial: dict, summary: dict) -> None:
    hp, metrics = trial["hp"], trial["metrics"]
    batch = hp["batch_size"]
    assert batch in (32, 64, 128)
    assert 1e-3 <= hp["lr_normalized"] <= 1e-1
    assert metrics["global_batch_size"] == batch
    assert metrics["num_replicas"] == 2
    assert metrics["per_replica_batch_size"] == batch // 2
    # SGD: linear scaling from the smallest batch.
    expected = hp["lr_normalized"] * batch / summary["ref_batch"]
    assert metrics["learning_rate"] == pytest.approx(expected, rel=1e-9)
    assert summary["scaling"] == "linear"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["random", "bayesian", "hyperband"])
def test_search_under_mirrored_strategy(name, tmp_path):
    out = tmp_path / "out.json"
    _run_worker([name, str(tmp_path / "search"), str(out), "3"])
    summary = json.loads(out.read_text())
    done = [t for t in summary["trials"] if t["status"] == "COMPLETED"]
    assert len(done) >= 3
    for trial in done:
        _check_trial(trial, summary)
    runs = summary["runs"]
    assert runs, "no model was trained"
    for run in runs:
        # Trained under the 2-replica MirroredStrategy, with mirrored weights.
        assert run["strategy"] == "MirroredStrategy" and run["replicas"] == 2
        assert run["mirrored_variable"]
        # The user's compiled optimizer was re-created with its settings kept.
        assert run["optimizer"] == "SGD"
        assert run["momentum"] == pytest.approx(0.8)
        assert run["nesterov"] is True
    if name != "hyperband":
        # One epoch over the dataset, re-batched to the global batch
        # (the dataset came batched by 7).
        steps = sorted(r["steps"] for r in runs)
        expected = sorted(
            math.ceil(summary["n_train"] / t["hp"]["batch_size"]) for t in done
        )
        assert steps == expected
        lrs = sorted(r["lr"] for r in runs)
        assert lrs == pytest.approx(
            sorted(t["metrics"]["learning_rate"] for t in done), rel=1e-6
        )


def _completed(directory: Path) -> dict[str, dict]:
    result = {}
    for path in directory.glob("search/trial_*/trial.json"):
        data = json.loads(path.read_text())
        if data["status"] == "COMPLETED":
            result[data["trial_id"]] = data["hyperparameters"]["values"]
    return result


@pytest.mark.slow
def test_killed_search_resumes_without_repeating_trials(tmp_path):
    directory = tmp_path / "search"
    out = tmp_path / "out.json"
    args = [sys.executable, str(WORKER), "random", str(directory), str(out), "4"]
    proc = subprocess.Popen(
        args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(_completed(directory)) < 2:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        # KerasTuner rewrites oracle.json in place right after a trial ends
        # (and as the next one starts): kill the search while it trains the
        # next trial, not in the middle of that write, which would leave a
        # truncated file that KerasTuner cannot reload (a KerasTuner limit,
        # documented in the tuning guide).
        time.sleep(0.5)
        proc.kill()
    finally:
        proc.wait()
    before = _completed(directory)
    assert 2 <= len(before) < 4, "the search was not killed mid-way"
    _run_worker(["random", str(directory), str(out), "4"])
    summary = json.loads(out.read_text())
    after = _completed(directory)
    assert len(after) == 4
    for trial_id, values in before.items():
        assert after[trial_id] == values
    # The second process trained only the trials that had not completed.
    assert len(summary["runs"]) <= 4 - len(before)
    assert len(summary["runs"]) >= 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_tuning_chief_and_two_workers(tmp_path):
    port = str(_free_port())
    directory = str(tmp_path / "search")
    common = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    procs = []
    for tuner_id in ("chief", "tuner0", "tuner1"):
        out = tmp_path / f"{tuner_id}.json"
        procs.append((tuner_id, out, subprocess.Popen(
            [sys.executable, str(WORKER), "random", directory, str(out), "4"],
            env=_env(KERASTUNER_TUNER_ID=tuner_id, **common),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )))  # fmt: skip
        if tuner_id == "chief":
            time.sleep(3)
    try:
        for tuner_id, _, proc in procs[1:]:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, f"{tuner_id}: {err[-3000:]}"
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    trained = []
    for _, out, _ in procs[1:]:
        summary = json.loads(out.read_text())
        trained.append(len(summary["runs"]))
        for run in summary["runs"]:
            assert run["replicas"] == 2
    # Both workers trained trials, together exactly the oracle's four.
    assert all(n >= 1 for n in trained)
    assert sum(trained) == 4


# -- in-process: a search without strategy, the image classifier, the plot ----


@pytest.fixture(scope="module")
def small_data(fashion_sample):
    (x, y), (xt, yt) = fashion_sample
    return (x[:256, ::2, ::2], y[:256]), (xt[:64, ::2, ::2], yt[:64])


def test_image_classifier_search_auto_range_and_plot(small_data, tmp_path):
    (x, y), val = small_data
    hm = tuner.ImageClassifierHyperModel(
        (14, 14, 1), 10, widths=(4,), depths=(1,), stages=2,
        batch_sizes=(32, 64), lr_range="auto", range_test_steps=20,
        distribution_strategy=None,
    )  # fmt: skip
    search = keras_tuner.RandomSearch(
        hm, objective="val_loss", max_trials=3, directory=str(tmp_path), seed=0
    )
    search.search(x, y, validation_data=val, epochs=1, verbose=0)
    trials = [t for t in search.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(trials) == 3
    for trial in trials:
        values = trial.hyperparameters.values
        low, high = hm.auto_range(None, values["batch_size"], (), {})  # known now
        assert 0 < low < high and high / low == pytest.approx(90.0)
        lr = trial.metrics.get_last_value("learning_rate")
        u = values["lr_position"]
        assert lr == pytest.approx(low * (high / low) ** u, rel=1e-9)
        assert trial.metrics.get_last_value("num_replicas") == 1
        assert set(values) >= {"width", "blocks", "augment", "batch_size"}
    fig = tuner.plot_search(search)
    ax = fig.axes[0]
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == 3
    assert sorted(np.asarray(offsets)[:, 1].tolist()) == sorted(
        float(t.hyperparameters["batch_size"]) for t in trials
    )


def _auto_setup(small_data, batch_sizes):
    """Flat images, a linear model's factory, and an auto-range SGD hypermodel."""
    (x, y), _ = small_data
    x = x.reshape(len(x), -1).astype("float32") / 255.0
    build = lambda hp: keras.Sequential(  # noqa: E731
        [keras.Input((x.shape[1],)), keras.layers.Dense(10)]
    )
    hm = tuner.LRBatchSizeHyperModel(
        build, batch_sizes=batch_sizes, optimizer="sgd", range_test_steps=20,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distribution_strategy=None,
    )  # fmt: skip
    return x, y, build, hm


def test_auto_range_one_range_test_scaled_by_the_rule(small_data, monkeypatch):
    import keras_lr

    x, y, build, hm = _auto_setup(small_data, (32, 128))
    calls, results = [], []
    real = keras_lr.lr_range_test

    def counting(*args, **kwargs):
        calls.append(kwargs.get("batch_size"))
        results.append(real(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(keras_lr, "lr_range_test", counting)
    model = build(None)
    model.build((None, x.shape[1]))
    before = [w.copy() for w in model.get_weights()]
    low128, high128 = hm.auto_range(model, 128, (x, y), {})
    low32, high32 = hm.auto_range(model, 32, (x, y), {})
    assert calls == [32]  # one range test, at the reference batch
    lr_min = results[0].suggest_range()[1]
    assert (low32, high32) == pytest.approx((lr_min / 30, 3 * lr_min), rel=1e-12)
    assert low128 / low32 == pytest.approx(4.0)  # linear scaling for SGD
    assert high128 / high32 == pytest.approx(4.0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_auto_range_tests_the_weighted_loss(small_data, monkeypatch):
    import keras_lr

    x, y, build, hm = _auto_setup(small_data, (32, 128))
    seen = []
    real = keras_lr.lr_range_test

    def spying(*args, **kwargs):
        seen.append((kwargs.get("sample_weight"), kwargs.get("class_weight")))
        return real(*args, **kwargs)

    monkeypatch.setattr(keras_lr, "lr_range_test", spying)
    model = build(None)
    model.build((None, x.shape[1]))
    w = np.linspace(0.5, 1.5, len(x)).astype("float32")
    hm.auto_range(model, 32, (x, y), {"sample_weight": w})
    hm._reference_lr_min = None
    hm.auto_range(model, 32, (x, y), {"class_weight": {0: 2.0}})
    assert seen[0][0] is w and seen[0][1] is None
    assert seen[1] == (None, {0: 2.0})


def test_each_trial_keeps_the_rule_of_its_own_optimizer():
    # `build_model` picks the optimizer: after builds of both families,
    # `learning_rate(values)` scales each trial's rate by its own rule, not
    # by the last build's.
    def build(hp):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        opt = hp.Choice("opt", ["sgd", "adam"])
        model.compile(
            optimizer=keras.optimizers.SGD()
            if opt == "sgd"
            else keras.optimizers.Adam(),
            loss="mse",
        )
        return model

    hm = tuner.LRBatchSizeHyperModel(
        build, batch_sizes=(64, 256), lr_range=(1e-4, 1e-1),
        distribution_strategy=None,
    )  # fmt: skip
    trials = {}
    for opt in ("sgd", "adam"):
        hp = keras_tuner.HyperParameters()
        hp.values["opt"] = opt
        hp.values["batch_size"] = 256
        hp.values["lr_normalized"] = 0.01
        model = hm.build(hp)
        trials[opt] = dict(hp.values)
        assert float(model.optimizer.learning_rate) == pytest.approx(
            hm.learning_rate(hp.values)
        )
    assert hm.learning_rate(trials["sgd"]) == pytest.approx(0.04)  # linear, 4x
    assert hm.learning_rate(trials["adam"]) == pytest.approx(0.02)  # sqrt, 2x
    assert hm.learning_rate(trials["sgd"] | {"batch_size": 64}) == pytest.approx(0.01)


def test_scaling_rules_and_normalised_rate():
    build = lambda hp: keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])  # noqa: E731
    for optimizer, rule, factor in (("sgd", "linear", 4.0), ("adam", "sqrt", 2.0)):
        hm = tuner.LRBatchSizeHyperModel(
            build, batch_sizes=(256, 64), lr_range=(1e-4, 1e-1), loss="mse",
            optimizer=optimizer, distribution_strategy=None,
        )  # fmt: skip
        assert hm.lr_scaling == rule and hm.reference_batch_size == 64
        lr = hm.learning_rate({"batch_size": 256, "lr_normalized": 0.01})
        assert lr == pytest.approx(0.01 * factor)
    hm = tuner.LRBatchSizeHyperModel(
        build, batch_sizes=(8, 64), lr_range=(1e-4, 1e-1), lr_scaling="none",
        loss="mse", distribution_strategy=None,
    )  # fmt: skip
    assert hm.learning_rate({"batch_size": 64, "lr_normalized": 0.01}) == 0.01


def test_schedules_and_large_batch_warmup():
    from keras_lr import schedules

    build = lambda hp: keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])  # noqa: E731
    kwargs = {"lr_range": (1e-4, 1e-1), "loss": "mse", "distribution_strategy": None}
    hm = tuner.LRBatchSizeHyperModel(build, schedule="one_cycle", **kwargs)
    sched, warmup = hm._schedule(0.1, 64, 200)
    assert isinstance(sched, schedules.OneCycle) and warmup == 0
    # PyTorch convention: the peak is at step pct_start * total_steps - 1.
    assert float(sched(59)) == pytest.approx(0.1, rel=1e-5)
    hm = tuner.LRBatchSizeHyperModel(build, schedule="warmup_cosine", **kwargs)
    sched, warmup = hm._schedule(0.1, 64, 200)
    assert isinstance(sched, schedules.WarmupCosineDecay) and warmup == 20
    assert float(sched(20)) == pytest.approx(0.1, rel=1e-5)
    hm = tuner.LRBatchSizeHyperModel(
        build, batch_sizes=(256, 2048), warmup_batch_size=1024, **kwargs
    )
    assert hm._schedule(0.1, 256, 100) == (0.1, 0)  # small batch: a float rate
    sched, warmup = hm._schedule(0.1, 2048, 100)
    assert isinstance(sched, schedules.Warmup) and warmup == 10
    assert float(sched(0)) < 0.02 and float(sched(10)) == pytest.approx(0.1)


def test_oom_fails_the_trial_only(small_data):
    (x, y), _ = small_data

    def build(hp):
        return keras.Sequential([keras.Input((14, 14, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(10)])  # fmt: skip

    hm = tuner.LRBatchSizeHyperModel(
        build, batch_sizes=(32,), lr_range=(1e-3, 1e-2), loss="mse",
        distribution_strategy=None,
        callbacks=[_RaiseOOM()],
    )  # fmt: skip
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="out of memory"):
        hm.fit(hp, model, x, keras.utils.to_categorical(y, 10), epochs=1, verbose=0)
    assert tuner.is_out_of_memory(RuntimeError("OOM when allocating tensor"))
    assert not tuner.is_out_of_memory(RuntimeError("shape mismatch"))


class _RaiseOOM(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        raise RuntimeError(
            "RESOURCE_EXHAUSTED: OOM when allocating tensor with shape[32,10]"
        )


# -- bad input ---------------------------------------------------------------


def _dense(hp=None):
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_sizes": ()}, ValueError, r"`batch_sizes` must not be empty"),
        ({"batch_sizes": (32, 0)}, ValueError, r"positive integers.*\(32, 0\)"),
        ({"batch_sizes": (32, -8)}, ValueError, r"positive integers"),
        ({"batch_sizes": 32}, TypeError, r"sequence of positive integers"),
        ({"batch_sizes": (32.0,)}, TypeError, r"must hold integers"),
        ({"lr_range": (0.1, 0.01)}, ValueError, r"min_lr < max_lr"),
        ({"lr_range": (0.1, 0.1)}, ValueError, r"min_lr < max_lr"),
        ({"lr_range": (0.0, 0.1)}, ValueError, r"`lr_range\[0\]` must be > 0"),
        ({"lr_range": "wide"}, ValueError, r"`lr_range` must be one of"),
        ({"lr_scaling": "cubic"}, ValueError, r"`lr_scaling` must be one of"),
        ({"optimizer": "rmsprop"}, ValueError, r"`optimizer` must be one of"),
        ({"schedule": "step"}, ValueError, r"`schedule` must be one of"),
        ({"lr_range": (1e-3, math.inf)}, ValueError, r"finite rates"),
        ({"lr_range": (math.nan, 0.1)}, ValueError, r"finite rates"),
        ({"lr_range": (-math.inf, 0.1)}, ValueError, r"finite rates"),
        (
            {"distribution_strategy": "mirrored"},
            TypeError,
            r'`distribution_strategy` must be "auto", None or a '
            r"tf\.distribute\.Strategy.*'mirrored'",
        ),
        (
            {"distribution_strategy": 2},
            TypeError,
            r"`distribution_strategy` must be",
        ),
        (
            {"callbacks": keras.callbacks.TerminateOnNaN()},
            TypeError,
            r"`callbacks` must be a list.*callbacks=\[cb\]",
        ),
        ({"callbacks": ["lr"]}, TypeError, r"must hold keras\.callbacks\.Callback"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"loss": "mse", "distribution_strategy": None, **kwargs}
    with pytest.raises(error, match=match):
        tuner.LRBatchSizeHyperModel(_dense, **kwargs)


def test_build_model_must_return_a_model():
    hm = tuner.LRBatchSizeHyperModel(
        lambda hp: "not a model", loss="mse", lr_range=(1e-3, 1e-1),
        distribution_strategy=None,
    )  # fmt: skip
    with pytest.raises(TypeError, match=r"must return a keras\.Model.*str"):
        hm.build(keras_tuner.HyperParameters())


def test_uncompiled_model_needs_a_loss():
    hm = tuner.LRBatchSizeHyperModel(
        _dense, lr_range=(1e-3, 1e-1), distribution_strategy=None
    )
    with pytest.raises(ValueError, match="uncompiled model and no `loss`"):
        hm.build(keras_tuner.HyperParameters())


def test_batch_sizes_must_divide_over_replicas():
    class TwoReplicas:
        num_replicas_in_sync = 2

    with pytest.raises(ValueError, match="multiples of the number of replicas"):
        tuner.LRBatchSizeHyperModel(
            _dense, batch_sizes=(32, 33), loss="mse", lr_range=(1e-3, 1e-1),
            distribution_strategy=TwoReplicas(),
        )  # fmt: skip


# -- auto range persisted with the search; compiled best models --------------


def _tiny_task(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(192, 8)).astype("float32")
    y = (x[:, :3].sum(1) > 0).astype("int32")
    return x, y


def _tiny_build(hp):
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(hp.Int("units", 4, 16, step=4), activation="relu"),
            keras.layers.Dense(2),
        ]
    )


def _tiny_hypermodel(**kwargs):
    return tuner.LRBatchSizeHyperModel(
        _tiny_build, batch_sizes=(16, 32), range_test_steps=10,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], distribution_strategy=None, **kwargs,
    )  # fmt: skip


def _tiny_search(name, hm, directory, max_trials, overwrite):
    kwargs = {
        "objective": "val_loss", "max_trials": max_trials, "overwrite": overwrite,
        "directory": str(directory), "project_name": "search", "seed": 0,
    }  # fmt: skip
    if name == "bayesian":
        search = keras_tuner.BayesianOptimization(hm, num_initial_points=2, **kwargs)
    else:
        search = keras_tuner.RandomSearch(hm, **kwargs)
    x, y = _tiny_task()
    search.search(x, y, validation_data=(x[:64], y[:64]), epochs=1, verbose=0)
    return search


@pytest.mark.parametrize("name", ["random", "bayesian"])
def test_auto_range_is_stored_with_the_search_and_kept_on_resume(
    name, tmp_path, monkeypatch
):
    keras.utils.set_random_seed(0)
    hm1 = _tiny_hypermodel()
    tests1 = []
    real = hm1._auto_range

    def counting(*args, **kwargs):
        tests1.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(hm1, "_auto_range", counting)
    search1 = _tiny_search(name, hm1, tmp_path, 2, overwrite=True)
    assert len(tests1) == 1  # one range test for the whole search
    trials = [t for t in search1.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(trials) == 2
    lr_min = trials[0].hyperparameters.values.get("auto_lr_min")
    assert lr_min == pytest.approx(hm1._reference_range[1] / 3, rel=1e-12)
    assert trials[1].hyperparameters.values["auto_lr_min"] == lr_min
    space = {hp.name: hp for hp in search1.oracle.hyperparameters.space}
    fixed = space["auto_lr_min"]
    assert isinstance(fixed, keras_tuner.engine.hyperparameters.Fixed)
    assert fixed.value == lr_min

    # A resumed search: a new hypermodel whose range test would give another
    # interval (a different initialisation); it must not run at all.
    keras.utils.set_random_seed(1)
    hm2 = _tiny_hypermodel()
    tests2 = []

    def other_answer(*args, **kwargs):
        tests2.append(kwargs)
        return 100.0 * lr_min

    monkeypatch.setattr(hm2, "_auto_range", other_answer)
    search2 = _tiny_search(name, hm2, tmp_path, 3, overwrite=False)
    assert tests2 == []
    trials = [t for t in search2.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(trials) == 3
    for trial in trials:
        values = trial.hyperparameters.values
        assert values["auto_lr_min"] == lr_min
        low, high = lr_min / 30, 3 * lr_min
        factor = math.sqrt(values["batch_size"] / 16)  # Adam: sqrt scaling
        expected = low * factor * (high / low) ** values["lr_position"]
        used = trial.metrics.get_last_value("learning_rate")
        assert used == pytest.approx(expected, rel=1e-9)
        assert hm2.learning_rate(values) == pytest.approx(used, rel=1e-12)


def test_learning_rate_before_any_auto_range_is_an_error():
    hm = _tiny_hypermodel()
    with pytest.raises(ValueError, match="interval is not known yet"):
        hm.learning_rate({"batch_size": 16, "lr_position": 0.5})
    values = {"batch_size": 32, "lr_position": 0.0, "auto_lr_min": 0.03}
    assert hm.learning_rate(values) == pytest.approx(0.001 * math.sqrt(2))


def test_best_model_of_an_uncompiled_build_model_is_compiled(tmp_path):
    keras.utils.set_random_seed(0)
    hm = _tiny_hypermodel(lr_range=(1e-3, 1e-1), optimizer="sgd")
    search = _tiny_search("random", hm, tmp_path, 2, overwrite=True)
    best = search.get_best_models(1)[0]
    trial = search.oracle.get_best_trials(1)[0]
    assert best.compiled
    assert isinstance(best.optimizer, keras.optimizers.SGD)
    rate = trial.metrics.get_last_value("learning_rate")
    assert float(best.optimizer.learning_rate) == pytest.approx(rate, rel=1e-6)
    x, y = _tiny_task()
    loss, _ = best.evaluate(x[:64], y[:64], verbose=0)
    assert loss == pytest.approx(trial.score, rel=1e-5)


def test_build_compiles_an_uncompiled_model_and_fit_recompiles_it():
    x, y = _tiny_task()
    hm = _tiny_hypermodel(lr_range=(1e-3, 1e-1), optimizer="sgd")
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    assert model.compiled
    rate = hm.learning_rate(hp.values)
    assert float(model.optimizer.learning_rate) == pytest.approx(rate, rel=1e-6)
    hm.fit(hp, model, x, y, epochs=1, verbose=0)
    # `fit` compiles with the hypermodel's optimizer (SGD, momentum 0.9).
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.momentum == pytest.approx(0.9)
    assert float(model.optimizer.learning_rate) == pytest.approx(rate, rel=1e-6)
    # Auto range, before any range test: a placeholder rate.
    hm = _tiny_hypermodel()
    model = hm.build(keras_tuner.HyperParameters())
    assert model.compiled
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_callbacks_none_and_strategy_objects_are_accepted():
    import tensorflow as tf

    hm = tuner.LRBatchSizeHyperModel(
        _dense, loss="mse", lr_range=(1e-3, 1e-1), callbacks=None,
        distribution_strategy=tf.distribute.get_strategy(),
    )  # fmt: skip
    assert hm.callbacks == [] and hm.num_replicas == 1
    callback = keras.callbacks.TerminateOnNaN()
    hm = tuner.LRBatchSizeHyperModel(
        _dense, loss="mse", lr_range=(1e-3, 1e-1), callbacks=(callback,),
        distribution_strategy="auto",
    )  # fmt: skip
    assert hm.callbacks == [callback]


def test_lr_range_accepts_a_numpy_pair():
    hm = tuner.LRBatchSizeHyperModel(
        _dense, loss="mse", distribution_strategy=None,
        lr_range=np.geomspace(1e-4, 1e-1, 2),
    )  # fmt: skip
    assert hm.lr_range == pytest.approx((1e-4, 1e-1), rel=1e-12)
    assert all(type(v) is float for v in hm.lr_range)
    with pytest.raises(TypeError, match=r"a pair \(min_lr, max_lr\)"):
        tuner.LRBatchSizeHyperModel(
            _dense, loss="mse", distribution_strategy=None,
            lr_range=np.array([1e-4, 1e-2, 1e-1]),
        )  # fmt: skip
    with pytest.raises(ValueError, match="min_lr < max_lr"):
        tuner.LRBatchSizeHyperModel(
            _dense, loss="mse", distribution_strategy=None,
            lr_range=np.array([1e-1, 1e-4], dtype="float32"),
        )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"widths": 16}, TypeError, r"`widths` must be a sequence of integers"),
        ({"depths": 2}, TypeError, r"`depths` must be a sequence of integers"),
        ({"widths": "16"}, TypeError, r"`widths` must be a sequence of integers"),
        ({"widths": (16.0,)}, TypeError, r"`widths` must hold integers"),
        ({"widths": (True,)}, TypeError, r"`widths` must hold integers"),
        ({"widths": ()}, ValueError, r"`widths` must be a non-empty"),
        ({"depths": (0,)}, ValueError, r"`depths` must be a non-empty"),
        ({"widths": (16, 32, 16)}, ValueError, r"`widths` must not repeat"),
        ({"depths": (np.int64(2), 2)}, ValueError, r"`depths` must not repeat"),
        ({"input_shape": 28}, TypeError, r"`input_shape` must be a sequence"),
        ({"input_shape": (28.0, 28, 1)}, TypeError, r"`input_shape` must hold"),
        ({"input_shape": (28, 28)}, ValueError, r"\(height, width, channels\)"),
        ({"input_shape": (28, 0, 1)}, ValueError, r"\(height, width, channels\)"),
    ],
)
def test_image_classifier_bad_arguments(kwargs, error, match):
    kwargs = {"input_shape": (8, 8, 1), "num_classes": 3, **kwargs}
    with pytest.raises(error, match=match):
        tuner.ImageClassifierHyperModel(
            lr_range=(1e-3, 1e-1), distribution_strategy=None, **kwargs
        )


def test_image_classifier_accepts_numpy_integers():
    shape = np.array([8, 8, 1], dtype=np.int64)
    hm = tuner.ImageClassifierHyperModel(
        tuple(shape), np.int64(3), widths=np.array([4, 8]), depths=(np.int32(1),),
        stages=1, lr_range=(1e-3, 1e-1), distribution_strategy=None,
    )  # fmt: skip
    assert hm.input_shape == (8, 8, 1)
    assert all(type(d) is int for d in hm.input_shape)
    assert hm.widths == (4, 8) and hm.depths == (1,)
    model = hm.build(keras_tuner.HyperParameters())
    assert model.output_shape == (None, 3)


def test_auto_range_at_the_end_of_its_sweep_is_warned(small_data, monkeypatch):
    import keras_lr
    from keras_lr.range_test import LRRangeTestResult, RangeTestWarning

    x, y, build, hm = _auto_setup(small_data, (32,))
    # A loss still falling at the last rate of the sweep: no minimum.
    lrs = np.geomspace(1e-7, 10.0, 20)
    falling = LRRangeTestResult(lrs, np.linspace(2.3, 0.5, 20))
    monkeypatch.setattr(keras_lr, "lr_range_test", lambda *a, **k: falling)
    model = build(None)
    model.build((None, x.shape[1]))
    with pytest.warns(RangeTestWarning, match="lowest loss at the end of its sweep"):
        _, high = hm.auto_range(model, 32, (x, y), {})
    assert high == pytest.approx(3 * 10.0)


# Regressions (stop 13) ------------------------------------------------------


def test_batch_sizes_as_a_string_or_a_numpy_array():
    with pytest.raises(TypeError, match="batch_sizes='32'"):
        tuner.LRBatchSizeHyperModel(_dense, batch_sizes="32", loss="mse")
    hm = tuner.LRBatchSizeHyperModel(
        _dense, batch_sizes=2 ** np.arange(5, 9), loss="mse"
    )
    assert hm.batch_sizes == (32, 64, 128, 256)


def test_a_type_error_inside_build_model_reaches_the_user():
    def build(hp):
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense()])

    hm = tuner.LRBatchSizeHyperModel(build, lr_range=(1e-3, 1e-1), loss="mse")
    with pytest.raises(TypeError, match="units"):
        hm.build(keras_tuner.HyperParameters())
    # A factory of no argument is still called without one.
    hm = tuner.LRBatchSizeHyperModel(_dense, lr_range=(1e-3, 1e-1), loss="mse")
    assert isinstance(hm.build(keras_tuner.HyperParameters()), keras.Model)


def test_a_compiled_build_model_gets_the_trials_rate_and_keeps_its_scaling():
    def build(hp):
        model = _dense()
        opt = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.5, momentum=0.8),
            initial_scale=1024.0,
            dynamic_growth_steps=7,
        )
        model.compile(optimizer=opt, loss="mse")
        return model

    hm = tuner.LRBatchSizeHyperModel(
        build, lr_range=(1e-3, 1e-1), distribution_strategy=None
    )
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    rate = hm.learning_rate(hp.values)
    # `build` (and so get_best_models / build(best_hp)) at the trial's rate.
    assert float(model.optimizer.learning_rate) == pytest.approx(rate, rel=1e-6)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.optimizer.initial_scale == 1024.0
    assert model.optimizer.dynamic_growth_steps == 7
    assert model.optimizer.inner_optimizer.momentum == pytest.approx(0.8)


def test_a_run_of_one_step_trains_at_its_rate():
    kwargs = {"lr_range": (1e-4, 1e-1), "loss": "mse", "distribution_strategy": None}
    hm = tuner.LRBatchSizeHyperModel(_dense, schedule="warmup_cosine", **kwargs)
    sched, warmup = hm._schedule(0.1, 64, 1)
    assert warmup == 0 and float(sched(0)) == pytest.approx(0.1, rel=1e-6)
    hm = tuner.LRBatchSizeHyperModel(
        _dense, batch_sizes=(256, 2048), warmup_batch_size=1024, **kwargs
    )
    assert hm._schedule(0.1, 2048, 1) == (0.1, 0)


def test_datasets_are_counted_before_rebatching_and_unbatched_ones_batched():
    import tensorflow as tf

    from keras_lr.tuner.hypermodel import _rebatch, _steps_per_epoch

    model = _dense()
    x = np.zeros((256, 3), "float32")
    y = np.zeros((256, 1), "float32")
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    assert _steps_per_epoch((batched,), {}, 64, model) == 4
    single = tf.data.Dataset.from_tensor_slices((x, y))
    assert _steps_per_epoch((single,), {}, 64, model) == 4
    (rebatched,), _ = _rebatch((single,), {}, 64, model)
    assert [int(b[0].shape[0]) for b in rebatched] == [64, 64, 64, 64]


def test_samples_are_told_from_batches_for_a_model_without_an_input():
    # Found in QA: with no `keras.Input` (a model built on its first batch)
    # a dataset of single samples was re-batched as if its elements were
    # batches, and TensorFlow failed with a shape error.
    import tensorflow as tf

    from keras_lr.tuner.hypermodel import _rebatch

    model = keras.Sequential([keras.layers.Dense(3)])
    x = np.zeros((96, 10), "float32")
    onehot = np.zeros((96, 3), "float32")
    single = tf.data.Dataset.from_tensor_slices((x, onehot))
    (batched,), _ = _rebatch((single,), {}, 32, model)
    assert [tuple(b[0].shape) for b in batched] == [(32, 10)] * 3
    # Batches (their first axes unknown after `batch`) are re-batched.
    (rebatched,), _ = _rebatch((single.batch(8),), {}, 32, model)
    assert [tuple(b[1].shape) for b in rebatched] == [(32, 3)] * 3


def test_inputs_that_fix_their_own_batches_are_refused():
    from keras_lr.tuner.hypermodel import _rebatch

    def batches():
        yield np.zeros((10, 3)), np.zeros((10, 1))

    with pytest.raises(TypeError, match="fixes its own batches"):
        _rebatch((batches(),), {}, 64)


def test_an_augmenting_image_classifier_reloads(tmp_path):
    hm = tuner.ImageClassifierHyperModel(
        (28, 28, 1), 10, lr_range=(1e-3, 1e-1), distribution_strategy=None
    )
    hp = keras_tuner.HyperParameters()
    hp.Fixed("augment", True)
    model = hm.build(hp)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path)
    x = np.random.default_rng(0).random((2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_mistakes_stop_the_search_at_the_first_trial(tmp_path):
    # A mistake that every trial would repeat is fatal to the search at once
    # (KerasTuner would otherwise fail three trials before stopping).
    calls = []

    def not_a_model(hp):
        calls.append(1)
        return "not a model"

    hm = tuner.LRBatchSizeHyperModel(
        not_a_model, loss="mse", lr_range=(1e-3, 1e-1), distribution_strategy=None
    )
    with pytest.raises(keras_tuner.errors.FatalTypeError, match=r"keras\.Model"):
        search = keras_tuner.RandomSearch(
            hm, objective="loss", max_trials=5, directory=tmp_path, project_name="a"
        )
        search.search(np.zeros((64, 3)), np.zeros((64, 1)), epochs=1, verbose=0)
    assert len(calls) == 1

    def batches():
        while True:
            yield np.zeros((8, 3), "float32"), np.zeros((8, 1), "float32")

    hm = tuner.LRBatchSizeHyperModel(
        _dense, loss="mse", lr_range=(1e-3, 1e-1), distribution_strategy=None
    )
    search = keras_tuner.RandomSearch(
        hm, objective="loss", max_trials=5, directory=tmp_path, project_name="b"
    )
    with pytest.raises(keras_tuner.errors.FatalTypeError, match="own batches"):
        search.search(batches(), steps_per_epoch=2, epochs=1, verbose=0)
    assert len(search.oracle.trials) == 1

    hm = tuner.LRBatchSizeHyperModel(
        _dense, lr_range=(1e-3, 1e-1), distribution_strategy=None
    )
    with pytest.raises(keras_tuner.errors.FatalValueError, match="no `loss`"):
        hm.build(keras_tuner.HyperParameters())


def test_plot_search_refuses_what_is_not_a_tuner():
    for bad in (None, "tuner", keras_tuner.HyperParameters()):
        with pytest.raises(TypeError, match=r"`tuner` must be a keras_tuner\.Tuner"):
            tuner.plot_search(bad)


class _RateSeen(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


@pytest.mark.parametrize("schedule", ["one_cycle", "warmup_cosine"])
def test_a_dataset_of_unknown_length_is_counted_for_the_schedule(schedule):
    # Found in QA: a filtered dataset (length unknown) got a schedule built
    # for `epochs * 100` steps, silently: 1cycle peaked at half the rate the
    # trial recorded, warmup_cosine never decayed.
    import tensorflow as tf

    x, y = _tiny_task()  # 192 samples: 6 batches of 32
    hm = _tiny_hypermodel(lr_range=(1e-3, 1e-1), schedule=schedule)
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    hp.values["batch_size"] = 32
    data = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True)
    assert int(data.cardinality()) == -2
    seen = _RateSeen()
    with pytest.warns(UserWarning, match=r"counted 192 samples"):
        history = hm.fit(hp, model, data, epochs=2, verbose=0, callbacks=[seen])
    assert model.optimizer._learning_rate.get_config()["total_steps"] == 12
    peak = history.history["learning_rate"][-1]
    assert max(seen.rates) == pytest.approx(peak, rel=0.02)  # peak between steps
    assert seen.rates[11] < 0.05 * peak  # annealed by the last step


def test_a_compiled_model_keeps_auto_scale_loss_off():
    # Found in QA: `auto_scale_loss=False` is not in Keras's compile config:
    # the recompile at the trial's rate wrapped the optimizer in a
    # LossScaleOptimizer again.
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:

        def build(hp):
            model = _tiny_build(hp)
            model.compile(
                keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                auto_scale_loss=False,
            )
            return model

        hm = tuner.LRBatchSizeHyperModel(
            build, batch_sizes=(16,), lr_range=(1e-3, 1e-1),
            distribution_strategy=None,
        )  # fmt: skip
        hp = keras_tuner.HyperParameters()
        model = hm.build(hp)
        x, y = _tiny_task()
        hm.fit(hp, model, x, y, epochs=1, verbose=0, callbacks=None)
        assert isinstance(model.optimizer, keras.optimizers.Adam)
        assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_dtype_policy(policy)


def test_memory_precheck_reads_what_each_backend_reports(monkeypatch):
    # Found in QA: it read a "limit" that TensorFlow's get_memory_info does
    # not report, so it never ruled a batch out. JAX and PyTorch report the
    # free memory; TensorFlow does not (documented).
    import jax
    import torch

    from keras_lr.tuner import _feasibility

    assert _feasibility.device_memory_bytes() is None  # TensorFlow

    class Gpu:
        platform = "gpu"

        def memory_stats(self):
            return {"bytes_limit": 1000, "bytes_in_use": 300}

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(jax, "devices", lambda: [Gpu()])
    assert _feasibility.device_memory_bytes() == 700
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (4096, 8192))
    assert _feasibility.device_memory_bytes() == 4096
    # The pre-check marks a batch that cannot fit as a failed trial.
    model = _dense()
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="infeasible"):
        _feasibility.check_fits(model, 1024)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (2**40, 2**41))
    _feasibility.check_fits(model, 1024)


def test_a_dataset_of_unknown_length_is_not_counted_without_a_schedule():
    import warnings

    import tensorflow as tf

    x, y = _tiny_task()
    hm = _tiny_hypermodel(lr_range=(1e-3, 1e-1))  # no schedule, no warmup at 32
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    hp.values["batch_size"] = 32
    data = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hm.fit(hp, model, data, epochs=1, verbose=0)
    assert not any("counted" in str(w.message) for w in caught)


def test_single_samples_for_a_model_without_an_input_are_batched():
    # Found in QA: a model with no known input shape could not tell single
    # samples from batches; `rebatch` then failed on the scalar labels
    # (TensorFlow's "Invalid `batch_sizes`" message). A scalar component
    # can only be a single sample's.
    import tensorflow as tf

    x, y = _tiny_task()
    hm = tuner.LRBatchSizeHyperModel(
        lambda hp: keras.Sequential([keras.layers.Dense(2)]),
        batch_sizes=(32,), lr_range=(1e-3, 1e-1), distribution_strategy=None,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )  # fmt: skip
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    seen = _RateSeen()
    data = tf.data.Dataset.from_tensor_slices((x, y))  # one sample per element
    hm.fit(hp, model, data, epochs=1, verbose=0, callbacks=[seen])
    assert len(seen.rates) == 6  # 192 samples in batches of 32


def test_scale_factor_refuses_unknown_rules_and_bad_sizes():
    # An unknown rule fell back to 1.0 (no scaling), silently.
    assert tuner.scale_factor(256, 64, "linear") == 4.0
    with pytest.raises(ValueError, match="`scaling` must be one of"):
        tuner.scale_factor(256, 64, "Linear")
    with pytest.raises(ValueError, match="`reference_batch_size` must be >= 1"):
        tuner.scale_factor(256, 0, "linear")
    with pytest.raises(ValueError, match="`batch_size` must be >= 1"):
        tuner.scale_factor(-4, 64, "sqrt")


def _fixed_batch(batch):
    hp = keras_tuner.HyperParameters()
    hp.Fixed("batch_size", batch)
    return hp


def test_an_optimizer_callable_must_return_an_optimizer():
    # A name was compiled as Keras's default optimizer, at its default rate,
    # while the trial recorded the rate searched.
    x, y = _tiny_task()
    hm = _tiny_hypermodel(lr_range=(1e-3, 1e-1), optimizer=lambda lr: "sgd")
    hp = _fixed_batch(32)
    with pytest.raises(keras_tuner.errors.FatalTypeError, match="must return a Keras"):
        hm.fit(hp, hm.build(hp), x, y, epochs=1, verbose=0)


def test_a_batch_larger_than_the_data_is_an_infeasible_trial():
    # `fit` trained on one batch of all the samples, at the rate scaled for
    # the larger batch, and the trial was recorded at that batch.
    x, y = _tiny_task()
    n = len(x)
    hm = tuner.LRBatchSizeHyperModel(
        _tiny_build,
        batch_sizes=(32, 2 * n),
        lr_range=(1e-3, 1e-1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distribution_strategy=None,
    )
    hp = _fixed_batch(2 * n)
    model = hm.build(hp)
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="larger than the"):
        hm.fit(hp, model, x, y, epochs=1, verbose=0)


def test_one_cycle_of_one_step_trains_at_the_searched_rate():
    hm = tuner.LRBatchSizeHyperModel(
        _dense,
        schedule="one_cycle",
        lr_range=(1e-4, 1e-1),
        loss="mse",
        distribution_strategy=None,
    )
    assert hm._schedule(0.1, 64, 1) == (0.1, 0)
    sched, _ = hm._schedule(0.1, 64, 10)
    assert max(float(sched(s)) for s in range(10)) == pytest.approx(0.1, rel=0.05)


def test_positional_fit_arguments_are_read_by_name():
    # `search(x, y, None, 2)`: `batch_size` came twice and every trial failed.
    x, y = _tiny_task()
    hm = _tiny_hypermodel(lr_range=(1e-3, 1e-1))
    hp = _fixed_batch(32)
    model = hm.build(hp)
    history = hm.fit(hp, model, x, y, None, 2, 0)
    assert len(history.history["loss"]) == 2
