"""Property tests: over their arguments, schedules stay finite and in range.

TensorFlow only in CI (eager JAX dispatch makes 240 examples take half a
minute); the same `keras.ops` graph is checked on every backend at the
boundaries by test_schedules_values.py. Run them on another backend with
``KERAS_BACKEND=jax pytest tests/test_schedules_properties.py``.
"""

from __future__ import annotations

import _schedule_reference as ref
import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_lr import schedules as S

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
lrs = st.floats(1e-7, 10.0)
steps = st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=16)
lengths = st.integers(1, 10**6)


def evaluate(schedule, at):
    at = np.asarray([*at, 0, 2**31 - 1], dtype=ref.step_dtype())
    value = keras.ops.convert_to_numpy(schedule(keras.ops.convert_to_tensor(at)))
    return np.asarray(value, dtype=np.float64)


def assert_in_range(values, high):
    assert np.all(np.isfinite(values)), values
    assert np.all(values >= 0.0), values
    assert np.all(values <= high * (1 + 1e-5)), (values, high)


@SETTINGS
@given(
    lrs,
    st.floats(1.0, 100.0),
    lengths,
    st.one_of(st.none(), lengths),
    st.sampled_from(["triangular", "triangular2", "exp_range"]),
    st.floats(0.5, 1.0),
    steps,
)
def test_cyclic(base, ratio, up, down, mode, gamma, at):
    s = S.CyclicLR(base, base * ratio, up, down, mode=mode, gamma=gamma)
    values = evaluate(s, at)
    assert_in_range(values, base * ratio)
    assert np.all(values >= base * (1 - 1e-6))
    assert_in_range(evaluate(s.momentum(), at), 0.95)


@SETTINGS
@given(
    lrs,
    st.integers(1, 10**7),
    st.floats(0.01, 0.49),
    st.floats(1.0, 1e3),
    st.floats(1.0, 1e5),
    st.sampled_from(["cos", "linear"]),
    st.booleans(),
    steps,
)
def test_one_cycle(max_lr, total, pct, div, final_div, anneal, three, at):
    s = S.OneCycle(max_lr, total, pct, div, final_div, anneal, three)
    assert_in_range(evaluate(s, at), max_lr)
    assert_in_range(evaluate(s.momentum(), at), 0.95)


@SETTINGS
@given(
    lrs,
    st.integers(0, 10**6),
    st.floats(0.0, 1.0),
    st.sampled_from(["linear", "exponential"]),
    steps,
)
def test_warmup(lr, warm, initial_frac, shape, at):
    initial = (
        lr * max(initial_frac, 1e-3) if shape == "exponential" else lr * initial_frac
    )
    s = S.Warmup(S.InverseSqrt(lr, 10), warm, initial_lr=initial, shape=shape)
    assert_in_range(evaluate(s, at), lr)


@SETTINGS
@given(
    lrs,
    st.integers(2, 10**7),
    st.floats(0.0, 0.99),
    st.floats(0.0, 1.0),
    st.floats(0.01, 1.0),
    st.sampled_from(["linear", "cosine", "1-sqrt"]),
    steps,
)
def test_warmup_decays(peak, total, warm_frac, final_frac, decay_frac, decay, at):
    warm = int(warm_frac * (total - 1))
    s = S.WarmupCosineDecay(peak, total, warm, final_lr=peak * final_frac)
    assert_in_range(evaluate(s, at), peak)
    k = max(1, round(decay_frac * total))
    if warm + k <= total:
        s = S.WarmupStableDecay(peak, total, warm, decay_frac, peak * final_frac, decay)
        assert_in_range(evaluate(s, at), peak)


@SETTINGS
@given(
    lrs, lengths, st.floats(1.0, 4.0), st.floats(0.01, 1.0), st.floats(0.0, 1.0), steps
)
def test_cosine_restarts(lr, t0, t_mul, m_mul, min_frac, at):
    s = S.CosineRestarts(lr, t0, t_mul, m_mul, min_lr=lr * min_frac)
    assert_in_range(evaluate(s, at), lr)


@SETTINGS
@given(lrs, lengths, st.floats(0.0, 2.0), steps)
def test_inverse_sqrt_join_scaled(lr, warm, factor, at):
    s = S.Scaled(S.Join([S.InverseSqrt(lr, warm), lr / 2], [warm + 1]), factor)
    assert_in_range(evaluate(s, at), lr * factor)


def test_float_steps_are_floored_exactly():
    # Found in QA: float steps were cast to float32 before the floor, so
    # 16777217.0 was step 16777216 and float(2**31) step 2**31 - 256.
    from keras_lr.schedules import _base

    s = S.CyclicLR(0.1, 0.5, 1)  # 0.5 at odd steps, 0.1 at even ones
    assert float(s(16_777_217)) == pytest.approx(0.5)
    assert float(s(16_777_217.0)) == pytest.approx(0.5)
    assert float(s(np.float64(16_777_217.0))) == pytest.approx(0.5)
    assert int(_base.int_step(float(2**31))) == 2**31 - 1
    assert int(_base.int_step(float("nan"))) == 0
    assert float(S.InverseSqrt(0.1, 10)(float("nan"))) == 0.0
    if keras.backend.backend() != "jax":  # float64 tensors (no x64 on JAX)
        step = keras.ops.convert_to_tensor(np.array(16_777_217.0), dtype="float64")
        assert int(_base.int_step(step)) == 16_777_217
