"""The range test on real training: per-step losses, the sweep, exact restore."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import BACKEND, all_state, assert_bitwise_equal, small_cnn

import keras_lr
from keras_lr import suggest
from keras_lr.range_test._sweep import sweep_lrs
from keras_lr.range_test.api import default_race_steps

pytestmark = pytest.mark.multibackend


# Scripted problems -----------------------------------------------------------


def _mean_target_loss(y_true, y_pred):
    """The loss is the batch's mean target: a script the test controls."""
    return keras.ops.mean(y_true) + 0.0 * keras.ops.mean(y_pred)


def scripted_model(optimizer=None, **compile_kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(0.01),
        loss=_mean_target_loss,
        **compile_kwargs,
    )
    return model


def scripted_batches(values, batch_size=4):
    """One batch per value; every target of batch i equals values[i]."""
    for v in values:
        x = np.ones((batch_size, 3), dtype="float32")
        y = np.full((batch_size, 1), v, dtype="float32")
        yield x, y


def test_records_each_steps_own_loss_not_the_running_mean():
    values = np.linspace(5.0, 1.0, 30).astype("float32")
    values[::3] += 2.0  # not monotone: a running mean would smear this
    model = scripted_model()
    result = keras_lr.lr_range_test(
        model,
        scripted_batches(values),
        num_steps=30,
        start_lr=1e-6,
        end_lr=1e-3,
        verbose=0,
    )
    np.testing.assert_allclose(result.losses, values, rtol=1e-6)
    running = np.cumsum(values) / np.arange(1, 31)
    assert not np.allclose(result.losses, running)


def test_sweep_is_applied_inside_the_step():
    """Plain SGD on w with d(loss)/dw = 1: after k steps, w = -sum(lr_0..lr_k-1)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=lambda y_true, y_pred: (
            keras.ops.mean(y_pred) + 0.0 * keras.ops.mean(y_true)
        ),
    )
    x = np.ones((8, 1), dtype="float32")
    finder = keras_lr.callbacks.LRRangeTest(
        start_lr=1e-3, end_lr=1.0, num_steps=20, restore=False, diverge_threshold=1e9
    )
    model.fit(x, x, batch_size=8, epochs=25, callbacks=[finder], verbose=0)
    steps = len(finder.result)
    assert steps == 20
    expected = -np.sum(sweep_lrs(1e-3, 1.0, 20, "exponential"))
    assert float(model.get_weights()[0][0, 0]) == pytest.approx(expected, rel=1e-4)
    finder_lin = keras_lr.callbacks.LRRangeTest(
        start_lr=0.01,
        end_lr=0.2,
        num_steps=10,
        mode="linear",
        restore=False,
        diverge_threshold=1e9,
    )
    model.set_weights([np.zeros((1, 1), "float32")])
    model.fit(x, x, batch_size=8, epochs=12, callbacks=[finder_lin], verbose=0)
    expected = -np.sum(np.linspace(0.01, 0.2, 10))
    assert float(model.get_weights()[0][0, 0]) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("spe", [1, 4])
def test_steps_per_execution_keeps_every_step(spe):
    if spe > 1 and BACKEND == "torch":
        pytest.skip("Keras runs one step per execution on torch")
    values = np.linspace(3.0, 1.0, 24).astype("float32")
    model = scripted_model()
    result = keras_lr.lr_range_test(
        model,
        scripted_batches(values),
        num_steps=24,
        steps_per_execution=spe,
        start_lr=1e-6,
        end_lr=1e-3,
        verbose=0,
    )
    np.testing.assert_allclose(result.losses, values, rtol=1e-6)
    assert model.steps_per_execution == 1  # restored
    assert result.params["steps_per_execution"] == spe


@pytest.mark.skipif(BACKEND == "torch", reason="jit_compile is not used on torch")
def test_jit_compiled_model():
    values = np.linspace(3.0, 1.0, 12).astype("float32")
    model = scripted_model(jit_compile=True)
    result = keras_lr.lr_range_test(
        model,
        scripted_batches(values),
        num_steps=12,
        steps_per_execution=3,
        start_lr=1e-6,
        end_lr=1e-3,
        verbose=0,
    )
    np.testing.assert_allclose(result.losses, values, rtol=1e-6)


def test_data_cycles_when_it_runs_out():
    values = [3.0, 2.0, 1.0]
    model = scripted_model()
    result = keras_lr.lr_range_test(
        model,
        scripted_batches(values),
        num_steps=10,
        start_lr=1e-6,
        end_lr=1e-4,
        verbose=0,
    )
    np.testing.assert_allclose(result.losses, [3, 2, 1, 3, 2, 1, 3, 2, 1, 3])
    x = np.ones((12, 3), "float32")
    result = keras_lr.lr_range_test(
        model,
        x,
        np.ones((12, 1), "float32"),
        batch_size=4,
        num_steps=25,
        start_lr=1e-6,
        end_lr=1e-4,
        verbose=0,
    )
    assert len(result) == 25


class _Batches(keras.utils.PyDataset):
    def __init__(self, values):
        super().__init__()
        self.values = values

    def __len__(self):
        return len(self.values)

    def __getitem__(self, i):
        return next(scripted_batches([self.values[i]]))


def test_accepts_pydataset_and_dict_inputs():
    model = scripted_model()
    result = keras_lr.lr_range_test(
        model, _Batches([2.0, 1.0]), num_steps=11, start_lr=1e-6, end_lr=1e-4, verbose=0
    )
    # fit shuffles a PyDataset's batches; cycled, each one comes back in turn.
    np.testing.assert_allclose(np.sort(result.losses), [1] * 5 + [2] * 6)
    inputs = {"a": keras.Input((2,), name="a"), "b": keras.Input((1,), name="b")}
    merged = keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    model = keras.Model(inputs, keras.layers.Dense(1)(merged))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    rng = np.random.default_rng(0)
    x = {
        "a": rng.normal(size=(64, 2)).astype("float32"),
        "b": rng.normal(size=(64, 1)).astype("float32"),
    }
    y = (x["a"].sum(1, keepdims=True) + x["b"]).astype("float32")
    result = keras_lr.lr_range_test(model, x, y, batch_size=8, num_steps=20, verbose=0)
    assert len(result) >= 10 and np.isfinite(result.losses[0])


# Exact restore -------------------------------------------------------------


def _optimizers():
    return {
        "sgd_momentum": lambda: keras.optimizers.SGD(0.01, momentum=0.9),
        "adam": lambda: keras.optimizers.Adam(1e-3),
        "adamw": lambda: keras.optimizers.AdamW(1e-3, weight_decay=0.01),
        "schedule": lambda: keras.optimizers.Adam(
            keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9)
        ),
    }


@pytest.mark.parametrize("name", sorted(_optimizers()))
def test_restore_is_bitwise(name, fashion_sample):
    (x, y), _ = fashion_sample
    model = small_cnn(_optimizers()[name](), batchnorm=True, dropout=0.2)
    model.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0)  # non-zero slots
    before = all_state(model)
    lr_object = model.optimizer._learning_rate
    train_function = model.train_function
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    result = keras_lr.lr_range_test(
        model, x[:512], y[:512], batch_size=32, num_steps=30, verbose=0
    )
    assert len(result) >= 10
    assert_bitwise_equal(before, all_state(model))
    assert model.optimizer._learning_rate is lr_object
    assert model.train_function is train_function
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == iterations
    # And training goes on as if nothing happened.
    history = model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_restore_with_mixed_precision(fashion_sample):
    (x, y), _ = fashion_sample
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = small_cnn(keras.optimizers.SGD(0.01, momentum=0.9), batchnorm=True)
    finally:
        keras.config.set_dtype_policy(policy)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    before = all_state(model)
    result = keras_lr.lr_range_test(
        model, x[:256], y[:256], batch_size=32, num_steps=20, verbose=0
    )
    assert len(result) >= 10
    assert_bitwise_equal(before, all_state(model))


def test_restore_when_user_code_raises(fashion_sample, monkeypatch):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.SGD(0.01, momentum=0.9))
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    before = all_state(model)

    def batches():
        for i in range(100):
            if i == 7:
                raise RuntimeError("boom")
            yield x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]

    # TensorFlow wraps a generator's error in its own type; the text stays.
    with pytest.raises(Exception, match="boom"):
        keras_lr.lr_range_test(model, batches(), num_steps=30, verbose=0)
    assert_bitwise_equal(before, all_state(model))

    def interrupt(self):
        raise KeyboardInterrupt  # as if Ctrl-C hit during the sweep

    monkeypatch.setattr(keras_lr.callbacks.LRRangeTest, "_check", interrupt)
    with pytest.raises(KeyboardInterrupt):
        keras_lr.lr_range_test(model, x, y, num_steps=30, verbose=0)
    assert_bitwise_equal(before, all_state(model))
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model._loss_tracker.__class__.__name__ == "Mean"


def test_fresh_model_keeps_its_initial_weights(fashion_sample):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.Adam(1e-3))
    weights = [np.array(w) for w in model.get_weights()]
    keras_lr.lr_range_test(model, x[:256], y[:256], num_steps=20, verbose=0)
    assert_bitwise_equal(weights, [np.array(w) for w in model.get_weights()])
    # The optimizer was built, as fit builds it, and holds its initial state.
    for v in model.optimizer.variables:
        value = keras.ops.convert_to_numpy(v.value)
        if "learning_rate" not in v.path:
            assert not np.any(value), v.path


def test_divergence_stops_the_sweep_and_restores(fashion_sample):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.SGD(0.01))
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    before = all_state(model)
    result = keras_lr.lr_range_test(
        model, x, y, batch_size=32, start_lr=1e-4, end_lr=1e4, num_steps=60, verbose=0
    )
    assert result.diverged
    assert len(result) == result.divergence_step + 1 < 60
    assert_bitwise_equal(before, all_state(model))


# The callback form and find_best_learning_rate -------------------------------


def test_callback_in_users_fit(fashion_sample):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.Adam(1e-3))
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    before = all_state(model)
    finder = keras_lr.callbacks.LRRangeTest(num_steps=40)
    history = model.fit(
        x[:640], y[:640], batch_size=32, epochs=3, callbacks=[finder], verbose=0
    )
    assert isinstance(history, keras.callbacks.History)
    assert len(finder.result) == 40
    np.testing.assert_allclose(
        finder.result.lrs, sweep_lrs(1e-7, 10.0, 40, "exponential")
    )
    assert_bitwise_equal(before, all_state(model))


def test_callback_restores_the_model_when_its_result_fails(monkeypatch):
    # Whatever goes wrong while the result is built, `fit` ends with the
    # model as it began: weights, optimizer state and the optimizer's rate.
    model = scripted_model(keras.optimizers.SGD(0.01, momentum=0.9))
    x, y = np.ones((40, 3), "float32"), np.linspace(3.0, 1.0, 40)[:, None]
    model.fit(x, y, batch_size=4, verbose=0)
    before = all_state(model)
    rate = model.optimizer.learning_rate

    def broken(self):
        raise RuntimeError("result failed")

    monkeypatch.setattr(keras_lr.callbacks.LRRangeTest, "_build_result", broken)
    finder = keras_lr.callbacks.LRRangeTest(num_steps=10)
    with pytest.raises(RuntimeError, match="result failed"):
        model.fit(x, y, batch_size=4, callbacks=[finder], verbose=0)
    assert finder.result is None
    assert_bitwise_equal(before, all_state(model))
    assert model.optimizer.learning_rate is rate
    # ...and trains on at its own rate afterwards.
    model.fit(x, y, batch_size=4, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


def test_find_best_learning_rate_restores_and_picks_a_candidate(fashion_sample):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.SGD(0.01, momentum=0.9), batchnorm=True)
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    before = all_state(model)
    search = keras_lr.find_best_learning_rate(
        model,
        (x, y),
        batch_size=32,
        num_steps=40,
        race_steps=15,
        verbose=0,
        return_details=True,
    )
    # The winner is the race's parabolic refinement around its best score.
    assert search.learning_rate == suggest.race_winner(search.candidates, search.scores)
    best = int(np.argmin(search.scores))
    low = search.candidates[max(best - 1, 0)]
    high = search.candidates[min(best + 1, len(search.candidates) - 1)]
    assert low <= search.learning_rate <= high
    assert search.steps == len(search.range_test) + 15 * len(search.candidates)
    assert_bitwise_equal(before, all_state(model))
    curve_only = keras_lr.find_best_learning_rate(
        model,
        (x, y),
        batch_size=32,
        num_steps=30,
        race=False,
        verbose=0,
        return_details=True,
    )
    assert curve_only.candidates == [] and curve_only.steps == len(
        curve_only.range_test
    )
    assert curve_only.learning_rate == curve_only.range_test.suggestion(warn=False)


@pytest.mark.skipif(
    BACKEND == "torch",
    reason="on torch, a sweep with validation_data is not repeatable bit for bit",
)
def test_find_best_scores_the_race_on_a_random_holdout(fashion_sample):
    (x, y), _ = fashion_sample
    x, y = x[:640], y[:640]
    model = small_cnn(keras.optimizers.Adam(1e-3))
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    before = all_state(model)
    kwargs = dict(batch_size=32, num_steps=20, race_steps=6, verbose=0, seed=3)
    keras.utils.set_random_seed(0)  # the sweep's batch order
    auto = keras_lr.find_best_learning_rate(
        model, (x, y), holdout=0.25, return_details=True, **kwargs
    )
    assert_bitwise_equal(before, all_state(model))
    # The contract: a `holdout` fraction drawn with `seed`, kept out of the
    # sweep and the race, scores each candidate at the end of its race.
    index = np.random.default_rng(3).permutation(640)
    held, kept = np.sort(index[:160]), np.sort(index[160:])
    keras.utils.set_random_seed(0)
    explicit = keras_lr.find_best_learning_rate(
        model,
        (x[kept], y[kept]),
        validation_data=(x[held], y[held]),
        return_details=True,
        **kwargs,
    )
    assert explicit.candidates == auto.candidates
    assert explicit.scores == auto.scores
    assert explicit.learning_rate == auto.learning_rate
    # Without a holdout the race is scored on its own training loss.
    plain = keras_lr.find_best_learning_rate(
        model, (x, y), holdout=0.0, return_details=True, **kwargs
    )
    assert plain.scores != auto.scores
    assert_bitwise_equal(before, all_state(model))


@pytest.mark.parametrize("holdout", [-0.1, 1.0])
def test_find_best_rejects_a_bad_holdout(fashion_sample, holdout):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="`holdout` must be in"):
        keras_lr.find_best_learning_rate(model, (x, y), holdout=holdout, verbose=0)
    with pytest.raises(TypeError, match="`holdout` must be a number"):
        keras_lr.find_best_learning_rate(model, (x, y), holdout="0.1", verbose=0)


@pytest.mark.filterwarnings("ignore::keras_lr.RangeTestWarning")
def test_find_best_default_race_shares_twice_the_sweep(fashion_sample):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.Adam(1e-3))
    # The default race shares 2 * num_steps steps among the candidates, so
    # the whole search costs at most 3 * num_steps training steps.
    assert default_race_steps(100, 4) == 50
    assert default_race_steps(30, 3) == 20
    assert default_race_steps(10, 40) == 1
    for num_candidates in (4, 3):
        search = keras_lr.find_best_learning_rate(
            model,
            (x[:640], y[:640]),
            batch_size=32,
            num_steps=30,
            num_candidates=num_candidates,
            verbose=0,
            return_details=True,
        )
        race_steps = 60 // num_candidates
        assert len(search.candidates) == num_candidates
        assert search.steps == len(search.range_test) + race_steps * num_candidates
        assert search.steps <= 3 * 30


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("race_steps", 0, ValueError),
        ("race_steps", 2.5, TypeError),
        ("num_candidates", 0, ValueError),
        ("num_candidates", True, TypeError),
    ],
)
def test_find_best_rejects_bad_race_arguments(fashion_sample, name, value, error):
    (x, y), _ = fashion_sample
    model = small_cnn(keras.optimizers.Adam(1e-3))
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    before = all_state(model)
    # Rejected before the range test runs: the model is not touched.
    with pytest.raises(error, match=f"`{name}` must"):
        keras_lr.find_best_learning_rate(model, (x, y), verbose=0, **{name: value})
    assert_bitwise_equal(before, all_state(model))


# Bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"start_lr": 0.0}, ValueError, "`start_lr` must be > 0"),
        (
            {"start_lr": 1.0, "end_lr": 0.1},
            ValueError,
            r"`end_lr` must be > `start_lr`. Received: start_lr=1.0, end_lr=0.1",
        ),
        ({"num_steps": 5}, ValueError, "`num_steps` must be >= 10"),
        ({"num_steps": 10**20}, ValueError, "`num_steps` must be <= 2147483647"),
        ({"smoothing": 1.0}, ValueError, "`smoothing` must be in"),
        ({"smoothing": -0.1}, ValueError, "`smoothing` must be in"),
        ({"mode": "cubic"}, ValueError, "`mode` must be one of"),
        ({"start_lr": "1e-7"}, TypeError, "must be a float"),
        ({"end_lr": 10}, TypeError, "must be a float"),
        ({"diverge_threshold": 1.0}, ValueError, "`diverge_threshold` must be > 1"),
        # Two float64 steps apart: the sweep's rates would repeat.
        (
            {"start_lr": 1e-3, "end_lr": float(np.nextafter(np.nextafter(1e-3, 1), 1))},
            ValueError,
            r"distinct, increasing rates.*num_steps=100",
        ),
        (
            {"start_lr": 1e-3, "end_lr": 1e-3 * (1 + 1e-14), "mode": "linear"},
            ValueError,
            "`end_lr` is too close to `start_lr` for 100 steps",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    model = scripted_model()
    before = all_state(model)
    with pytest.raises(error, match=match):
        keras_lr.lr_range_test(
            model, np.ones((8, 3)), np.ones((8, 1)), verbose=0, **kwargs
        )
    assert_bitwise_equal(before, all_state(model))


def test_uncompiled_model_and_empty_data():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="must be compiled"):
        keras_lr.lr_range_test(model, np.ones((8, 3)), np.ones((8, 1)))
    model = scripted_model()
    with pytest.raises(ValueError, match="empty"):
        keras_lr.lr_range_test(model, np.ones((0, 3)), np.ones((0, 1)))
    before = all_state(model)
    with pytest.raises(ValueError, match=r"empty|no step"):
        keras_lr.lr_range_test(model, scripted_batches([]), num_steps=10, verbose=0)
    assert_bitwise_equal(before, all_state(model))


def test_nan_loss_from_the_first_step():
    model = scripted_model()
    before = all_state(model)
    with pytest.raises(ValueError, match="not finite at the first step"):
        keras_lr.lr_range_test(
            model, scripted_batches([np.nan] * 20), num_steps=20, verbose=0
        )
    assert_bitwise_equal(before, all_state(model))
