"""plot_schedule draws the schedule's values, step by step."""

from __future__ import annotations

import _schedule_reference as ref
import keras
import numpy as np
import pytest

import keras_lr
from keras_lr import schedules as S


def test_plots_the_values_of_a_schedule_and_its_momentum():
    schedule = S.OneCycle(0.1, 50, three_phase=True)
    fig = keras_lr.plot_schedule(schedule, 60, momentum=schedule.momentum())
    lr_line = fig.axes[0].lines[0]
    np.testing.assert_array_equal(lr_line.get_xdata(), np.arange(60))
    expected = [ref.one_cycle(n, 0.1, 50, three_phase=True) for n in range(60)]
    np.testing.assert_allclose(lr_line.get_ydata(), expected, rtol=1e-5, atol=1e-9)
    momentum = fig.axes[1].lines[0].get_ydata()
    assert momentum[0] == pytest.approx(0.95) and min(momentum) == pytest.approx(0.85)


def test_keras_schedule_and_float():
    decay = keras.optimizers.schedules.PiecewiseConstantDecay([5], [0.1, 0.01])
    ys = keras_lr.plot_schedule(decay, 10).axes[0].lines[0].get_ydata()
    assert list(np.round(ys, 6)) == [0.1] * 6 + [0.01] * 4
    ys = keras_lr.plot_schedule(0.3, 4).axes[0].lines[0].get_ydata()
    assert list(ys) == [0.3] * 4


def test_bad_steps():
    with pytest.raises(ValueError, match="`steps` must be >= 1"):
        keras_lr.plot_schedule(S.InverseSqrt(0.1, 3), 0)


@pytest.mark.parametrize(
    "schedule,error,match",
    [
        ("0.1", TypeError, "must be a float"),
        (1, TypeError, r"must be a float, such as 1\.0"),
        (None, TypeError, "must be a float"),
        (-0.1, ValueError, "must be >= 0"),
        (float("nan"), ValueError, "must be finite"),
    ],
)
def test_bad_schedule(schedule, error, match):
    with pytest.raises(error, match=match):
        keras_lr.plot_schedule(schedule, 10)
    if schedule is not None:  # momentum=None draws no momentum
        with pytest.raises(error, match=match):
            keras_lr.plot_schedule(0.1, 10, momentum=schedule)


def test_a_plain_callable_is_drawn_and_titled():
    def halving(step):
        return 0.1 * 0.5 ** (step // 2)

    fig = keras_lr.plot_schedule(halving, 4)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.1, 0.1, 0.05, 0.05])
    assert fig.axes[0].get_title() == "function"
    assert keras_lr.plot_schedule(0.2, 2).axes[0].get_title() == "constant"
