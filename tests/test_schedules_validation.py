"""Bad arguments fail at construction with Keras-style messages."""

from __future__ import annotations

import math

import keras
import pytest

from keras_lr import schedules as S

CASES = [
    (lambda: S.CyclicLR(0.1, 0.01, 10), ValueError, "`max_lr` must be >= `base_lr`"),
    (lambda: S.CyclicLR("0.01", 0.1, 10), TypeError, "`base_lr` must be a float"),
    (lambda: S.CyclicLR(0.01, 1, 10), TypeError, "`max_lr` must be a float"),
    (lambda: S.CyclicLR(0.01, 0.1, 0), ValueError, "`step_size_up` must be >= 1"),
    (lambda: S.CyclicLR(0.01, 0.1, 2.5), TypeError, "`step_size_up` must be an int"),
    (
        lambda: S.CyclicLR(0.01, 0.1, 10, mode="cosine"),
        ValueError,
        "`mode` must be one",
    ),
    (lambda: S.CyclicLR(0.01, 0.1, 10, gamma=1.5), ValueError, "`gamma` must be in"),
    (lambda: S.CyclicLR(-0.01, 0.1, 10), ValueError, "`base_lr` must be >= 0"),
    (lambda: S.CyclicLR(0.01, float("inf"), 10), ValueError, "`max_lr` must be finite"),
    (lambda: S.OneCycle(0.1, 0), ValueError, "`total_steps` must be >= 1"),
    (lambda: S.OneCycle(0.1, -5), ValueError, "`total_steps` must be >= 1"),
    (
        lambda: S.OneCycle(0.1, 100, pct_start=1.0),
        ValueError,
        "`pct_start` must be in (0",
    ),
    (
        lambda: S.OneCycle(0.1, 100, pct_start=0.0),
        ValueError,
        "`pct_start` must be in (0",
    ),
    (lambda: S.OneCycle(0.0, 100), ValueError, "`max_lr` must be > 0"),
    (lambda: S.OneCycle(0.1, 100, anneal="cosine"), ValueError, "`anneal` must be one"),
    (lambda: S.OneCycle(0.1, 100, div_factor=0.5), ValueError, "`div_factor` must be"),
    (
        lambda: S.OneCycle(0.1, 100, pct_start=0.6, three_phase=True),
        ValueError,
        "`pct_start` must be < 0.5",
    ),
    (lambda: S.OneCycle(0.1, 2**31), ValueError, "`total_steps` must be <="),
    (lambda: S.Warmup(0.1, -1), ValueError, "`warmup_steps` must be >= 0"),
    (lambda: S.Warmup(0.1, 10, shape="cubic"), ValueError, "`shape` must be one"),
    (
        lambda: S.Warmup(0.1, 10, shape="exponential"),
        ValueError,
        "`initial_lr` must be > 0",
    ),
    (lambda: S.Warmup(lambda s: 0.1, 10), TypeError, "`schedule_or_float` must be"),
    (lambda: S.Warmup("0.1", 10), TypeError, "`schedule_or_float` must be a float"),
    (
        lambda: S.WarmupCosineDecay(0.1, 100, -1),
        ValueError,
        "`warmup_steps` must be >= 0",
    ),
    (
        lambda: S.WarmupCosineDecay(0.1, 100, 100),
        ValueError,
        "`total_steps` must be > `warmup_steps`",
    ),
    (
        lambda: S.WarmupCosineDecay(0.1, 100, 10, final_lr=0.2),
        ValueError,
        "`peak_lr` must be >= `final_lr`",
    ),
    (
        lambda: S.WarmupStableDecay(0.1, 100, 95, decay_fraction=0.1),
        ValueError,
        "`warmup_steps` + `decay_fraction * total_steps`",
    ),
    (
        lambda: S.WarmupStableDecay(0.1, 100, 10, decay_fraction=0.0),
        ValueError,
        "`decay_fraction` must be in (0",
    ),
    (
        lambda: S.WarmupStableDecay(0.1, 100, 10, decay="exp"),
        ValueError,
        "`decay` must be one",
    ),
    (lambda: S.CosineRestarts(0.1, 10, t_mul=0.5), ValueError, "`t_mul` must be >="),
    (lambda: S.CosineRestarts(0.1, 10, m_mul=1.5), ValueError, "`m_mul` must be in"),
    (lambda: S.CosineRestarts(0.1, 0), ValueError, "`first_cycle_steps` must be >= 1"),
    (
        lambda: S.CosineRestarts(0.1, 10, min_lr=0.2),
        ValueError,
        "`initial_lr` must be >= `min_lr`",
    ),
    (lambda: S.InverseSqrt(0.1, 0), ValueError, "`warmup_steps` must be >= 1"),
    (lambda: S.Join([0.1, 0.2], [5, 6]), ValueError, "one fewer element"),
    (lambda: S.Join([0.1, 0.2, 0.3], [6, 5]), ValueError, "strictly increasing"),
    (lambda: S.Join([], []), ValueError, "non-empty list"),
    (lambda: S.Join([0.1, 0.2], [0]), ValueError, "`boundaries[0]` must be >= 1"),
    (lambda: S.Scaled(0.1, factor=-1.0), ValueError, "`factor` must be >= 0"),
    (lambda: S.Scaled(0.1, factor=math.inf), ValueError, "`factor` must be finite"),
    (
        lambda: S.OneCycle(0.1, 100, div_factor=math.inf),
        ValueError,
        "`div_factor` must be finite",
    ),
    (
        lambda: S.OneCycle(0.1, 100, final_div_factor=math.inf),
        ValueError,
        "`final_div_factor` must be finite",
    ),
    (
        lambda: S.OneCycle(0.1, 100).momentum(0.95, 0.85),
        ValueError,
        "`max_momentum` must be >= `base_momentum`",
    ),
    (
        lambda: S.CyclicLR(0.01, 0.1, 10).momentum(0.85, 1.0),
        ValueError,
        "`max_momentum` must be in [0.0, 1.0)",
    ),
]


@pytest.mark.parametrize("make,error,fragment", CASES)
def test_bad_arguments_fail_at_construction(make, error, fragment):
    with pytest.raises(error, match=r"Arguments? .*Received") as info:
        make()
    assert fragment in str(info.value)


def test_message_shows_received_values():
    with pytest.raises(ValueError) as info:
        S.CyclicLR(0.1, 0.01, 10)
    assert str(info.value) == (
        "Argument `max_lr` must be >= `base_lr`. Received: base_lr=0.1, max_lr=0.01"
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: S.OneCycle(0.1, 100, div_factor=0.5),
            "Argument `div_factor` must be >= 1. Received: div_factor=0.5",
        ),
        (
            lambda: S.OneCycle(0.1, 100, final_div_factor=0.5),
            "Argument `final_div_factor` must be >= 1. Received: final_div_factor=0.5",
        ),
        (
            lambda: S.CosineRestarts(0.1, 5, t_mul=0.5),
            "Argument `t_mul` must be >= 1. Received: t_mul=0.5",
        ),
    ],
)
def test_constant_bound_messages(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_keras_schedules_and_floats_are_accepted_inside():
    decay = keras.optimizers.schedules.CosineDecay(0.1, 100)
    assert S.Warmup(decay, 5).schedule_or_float is decay
    assert S.Join([decay, 0.01], [100]).schedules[1] == 0.01
