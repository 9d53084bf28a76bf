"""get_config/from_config round trips, and `.keras` save/load mid-schedule."""

from __future__ import annotations

import _schedule_reference as ref
import keras
import numpy as np
import pytest

import keras_lr
from keras_lr import schedules as S

pytestmark = pytest.mark.multibackend


def all_schedules():
    return {
        "cyclic": S.CyclicLR(0.01, 0.1, 3, 5, mode="exp_range", gamma=0.99),
        "one_cycle": S.OneCycle(0.1, 20, pct_start=0.25, three_phase=True),
        "warmup": S.Warmup(
            S.CyclicLR(0.01, 0.1, 2), 3, initial_lr=1e-3, shape="exponential"
        ),
        "warmup_keras": S.Warmup(keras.optimizers.schedules.CosineDecay(0.1, 50), 2),
        "warmup_cosine": S.WarmupCosineDecay(0.1, 30, 4, final_lr=1e-3),
        "wsd": S.WarmupStableDecay(0.1, 30, 3, 0.3, 1e-3, "1-sqrt"),
        "restarts": S.CosineRestarts(0.1, 4, 2.0, 0.5, 1e-3),
        "inverse_sqrt": S.InverseSqrt(0.1, 3),
        "join": S.Join([S.InverseSqrt(0.1, 2), 0.05, S.OneCycle(0.2, 10)], [4, 6]),
        "scaled": S.Scaled(S.OneCycle(0.1, 20), factor=0.25),
        "shifted": S.Shifted(S.CyclicLR(0.01, 0.1, 2), offset=3),
        "cyclic_momentum": S.CyclicMomentum(0.8, 0.9, 3),
        "one_cycle_momentum": S.OneCycleMomentum(0.85, 0.95, 20),
    }


@pytest.mark.parametrize("name", sorted(all_schedules()))
def test_config_round_trip(name):
    schedule = all_schedules()[name]
    config = keras.saving.serialize_keras_object(schedule)
    assert config["registered_name"].startswith("keras_lr>")
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(schedule)
    assert again.get_config() == schedule.get_config()
    steps = np.arange(40)
    np.testing.assert_array_equal(ref.values(again, steps), ref.values(schedule, steps))


def test_scaled_config_keeps_the_lowered_factor():
    s = S.Scaled(S.OneCycle(0.1, 20))
    s.factor.assign(0.125)
    again = S.Scaled.from_config(s.get_config())
    assert float(keras.ops.convert_to_numpy(again.factor.value)) == 0.125
    assert again.factor is not s.factor


def fit_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")).astype("float32")
    return x, y


def tiny_model(optimizer):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


LR_SCHEDULES = [n for n in sorted(all_schedules()) if "momentum" not in n]


@pytest.mark.parametrize("name", LR_SCHEDULES)
def test_saved_model_continues_with_the_same_rate(name, tmp_path):
    schedule = all_schedules()[name]
    x, y = fit_data()
    model = tiny_model(keras.optimizers.SGD(learning_rate=schedule))
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # 6 steps
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    lr = type(schedule)
    assert type(loaded.optimizer._learning_rate) is lr
    assert int(loaded.optimizer.iterations) == 6
    assert float(loaded.optimizer.learning_rate) == float(model.optimizer.learning_rate)
    # Both go on for an epoch: same rates, same weights.
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert float(loaded.optimizer.learning_rate) == float(model.optimizer.learning_rate)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_saved_momentum_scheduled_optimizer(kind, tmp_path):
    one_cycle = S.OneCycle(0.05, 12)
    if kind == "sgd":
        opt = keras_lr.optimizers.SGD(
            one_cycle, momentum=one_cycle.momentum(), nesterov=True
        )
    elif kind == "adam":
        opt = keras_lr.optimizers.Adam(one_cycle, beta_1=one_cycle.momentum())
    else:
        opt = keras_lr.optimizers.AdamW(
            one_cycle, beta_1=one_cycle.momentum(), weight_decay=0.01
        )
    x, y = fit_data()
    model = tiny_model(opt)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is type(opt)
    attr = "momentum" if kind == "sgd" else "beta_1"
    assert isinstance(getattr(loaded.optimizer, attr), S.OneCycleMomentum)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
