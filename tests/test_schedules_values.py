"""Schedule values against closed forms, at the boundaries, compiled.

Every schedule is evaluated as the backend's compiled train step runs it
(`tf.function(jit_compile=True)`, `jax.jit`, eager torch) with the
optimizer counter's dtype, and compared with float64 numpy closed forms
(tests/_schedule_reference.py) at step 0, the end of warmup, the peak, each
cycle's end, the end of decay, past the end and step 2**31 - 1.
"""

from __future__ import annotations

import math

import _schedule_reference as ref
import keras
import numpy as np
import pytest

from keras_lr import schedules as S

pytestmark = pytest.mark.multibackend

BIG = 2**31 - 1


def check(schedule, steps, expected, scale):
    got = ref.values(schedule, steps)
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-7 * scale)
    # The optimizer evaluates one scalar step at a time: same values.
    np.testing.assert_allclose(
        ref.scalar_values(schedule, steps[:4]),
        expected[:4],
        rtol=2e-6,
        atol=2e-7 * scale,
    )
    assert np.all(np.isfinite(got)) and np.all(got >= 0)


@pytest.mark.parametrize(
    "mode,gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.999)]
)
@pytest.mark.parametrize("up,down", [(5, None), (3, 7)])
def test_cyclic_lr(mode, gamma, up, down):
    s = S.CyclicLR(0.01, 0.1, up, down, mode=mode, gamma=gamma)
    d = up if down is None else down
    t = up + d
    steps = [
        0,
        1,
        up - 1,
        up,
        up + 1,
        t - 1,
        t,
        t + up,
        3 * t,
        3 * t + 2,
        10 * t + 1,
        BIG - 1,
        BIG,
    ]
    expected = [ref.cyclic(n, 0.01, 0.1, up, down, mode, gamma) for n in steps]
    check(s, steps, np.array(expected), 0.1)
    m = s.momentum(0.85, 0.95)
    expected_m = [
        ref.cyclic_momentum(n, 0.85, 0.95, up, down, mode, gamma) for n in steps
    ]
    check(m, steps, np.array(expected_m), 1.0)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("total,pct", [(100, 0.3), (37, 0.25), (10, 0.1), (3, 0.2)])
def test_one_cycle(anneal, three_phase, total, pct):
    s = S.OneCycle(0.2, total, pct_start=pct, anneal=anneal, three_phase=three_phase)
    peak = round(pct * total - 1)
    steps = sorted(
        {
            0,
            1,
            max(peak - 1, 0),
            max(peak, 0),
            peak + 1,
            max(2 * peak, 0),
            total - 2,
            total - 1,
            total,
            total + 5,
            10 * total,
            BIG,
        }
        - {-1}
    )
    steps = [n for n in steps if n >= 0]
    expected = [
        ref.one_cycle(n, 0.2, total, pct, 25.0, 1e4, anneal, three_phase) for n in steps
    ]
    check(s, steps, np.array(expected), 0.2)
    # Holds the final value (initial / final_div_factor) past the end.
    assert ref.values(s, [total - 1, total, BIG]) == pytest.approx(
        [0.2 / 25 / 1e4] * 3, rel=1e-5
    )
    top, low = 0.95, 0.85
    points = [top, low, top, top] if three_phase else [top, low, top]
    expected_m = [
        ref.one_cycle(n, 0.2, total, pct, 25.0, 1e4, anneal, three_phase, points=points)
        for n in steps
    ]
    check(s.momentum(low, top), steps, np.array(expected_m), 1.0)


def test_one_cycle_peak_at_step_zero_when_first_phase_is_one_step():
    # pct_start * total_steps == 1: PyTorch divides by zero here.
    s = S.OneCycle(0.1, 10, pct_start=0.1)
    assert float(ref.values(s, [0])[0]) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "shape,initial", [("linear", 0.0), ("linear", 0.01), ("exponential", 1e-4)]
)
def test_warmup_around_a_schedule(shape, initial):
    inner = S.CyclicLR(0.02, 0.1, 4)
    s = S.Warmup(inner, 6, initial_lr=initial, shape=shape)
    steps = [0, 1, 5, 6, 7, 10, 14, 100, BIG]

    def target(n):
        return ref.cyclic(n, 0.02, 0.1, 4)

    expected = [ref.warmup(n, target, 6, initial, shape) for n in steps]
    check(s, steps, np.array(expected), 0.1)


def test_warmup_of_a_float_and_of_keras_schedule():
    s = S.Warmup(0.3, 10)
    check(s, [0, 5, 9, 10, BIG], np.array([0.0, 0.15, 0.27, 0.3, 0.3]), 0.3)
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    s = S.Warmup(decay, 4)
    steps = [0, 2, 4, 14, 24]
    expected = [ref.warmup(n, lambda k: 0.1 * 0.5 ** (k / 10), 4) for n in steps]
    check(s, steps, np.array(expected), 0.1)
    # No warmup: the schedule itself.
    check(S.Warmup(decay, 0), [0, 10], np.array([0.1, 0.05]), 0.1)


@pytest.mark.parametrize("warm,final", [(10, 0.0), (0, 1e-3), (99, 1e-4)])
def test_warmup_cosine_decay(warm, final):
    s = S.WarmupCosineDecay(0.5, 100, warm, final_lr=final)
    steps = sorted({0, 1, max(warm - 1, 0), warm, warm + 1, 55, 99, 100, 101, BIG})
    expected = [ref.warmup_cosine(n, 0.5, 100, warm, final) for n in steps]
    check(s, steps, np.array(expected), 0.5)


@pytest.mark.parametrize("decay", ["linear", "cosine", "1-sqrt"])
def test_warmup_stable_decay(decay):
    s = S.WarmupStableDecay(
        0.4, 200, 20, decay_fraction=0.25, final_lr=0.01, decay=decay
    )
    steps = [0, 10, 19, 20, 100, 149, 150, 151, 175, 199, 200, 500, BIG]
    expected = [ref.wsd(n, 0.4, 200, 20, 0.25, 0.01, decay) for n in steps]
    check(s, steps, np.array(expected), 0.4)


@pytest.mark.parametrize(
    "t_mul,m_mul", [(1.0, 1.0), (2.0, 0.5), (1.5, 0.9), (3.0, 1.0)]
)
def test_cosine_restarts(t_mul, m_mul):
    s = S.CosineRestarts(0.1, 10, t_mul=t_mul, m_mul=m_mul, min_lr=0.001)
    # Cycle starts and ends.
    starts, start, length = [], 0.0, 10.0
    for _ in range(5):
        starts.append(round(start))
        start += length
        length *= t_mul
    steps = sorted({0, 1, 5} | {b for a in starts[1:] for b in (a - 1, a, a + 1)})
    if t_mul == 1.0 or t_mul == 2.0 or t_mul == 3.0:  # integer cycle boundaries
        expected = [ref.sgdr(n, 0.1, 10, t_mul, m_mul, 0.001) for n in steps]
        check(s, steps, np.array(expected), 0.1)
    else:  # 1.5: boundaries fall between steps; compare away from them
        steps = [0, 3, 12, 20, 30, 44]
        expected = [ref.sgdr(n, 0.1, 10, t_mul, m_mul, 0.001) for n in steps]
        check(s, steps, np.array(expected), 0.1)
    big = ref.values(s, [BIG])
    assert np.isfinite(big).all() and (big >= 0).all() and (big <= 0.1).all()
    if t_mul == 1.0:
        check(s, [BIG], np.array([ref.sgdr(BIG % 10, 0.1, 10, 1.0, 1.0, 0.001)]), 0.1)


def test_inverse_sqrt():
    s = S.InverseSqrt(0.01, 100)
    steps = [0, 1, 50, 99, 100, 101, 400, 10_000, BIG]
    expected = [ref.inverse_sqrt(n, 0.01, 100) for n in steps]
    check(s, steps, np.array(expected), 0.01)


def test_join():
    first = S.WarmupCosineDecay(1.0, 10, 2)
    s = S.Join([first, 0.05, S.CyclicLR(0.1, 0.2, 3)], boundaries=[10, 15])
    steps = [0, 1, 2, 9, 10, 14, 15, 16, 18, 21, BIG]

    def expected_at(n):
        if n < 10:
            return ref.warmup_cosine(n, 1.0, 10, 2)
        if n < 15:
            return 0.05
        return ref.cyclic(n - 15, 0.1, 0.2, 3)

    check(s, steps, np.array([expected_at(n) for n in steps]), 1.0)


def test_scaled_and_shifted():
    inner = S.OneCycle(0.1, 50)
    s = S.Scaled(inner, factor=0.5)
    steps = [0, 14, 49, BIG]
    expected = np.array([0.5 * ref.one_cycle(n, 0.1, 50) for n in steps])
    check(s, steps, expected, 0.1)
    shifted = S.Shifted(inner, offset=7)
    expected = [ref.one_cycle(max(n - 7, 0), 0.1, 50) for n in (0, 7, 21, 56)]
    check(shifted, [0, 7, 21, 56], np.array(expected), 0.1)


def test_float_steps_and_int64_steps_beyond_int32():
    s = S.CyclicLR(0.01, 0.1, 5)
    # A float step is floored; an int64 step past 2**31 is clamped.
    assert float(s(7.9)) == pytest.approx(ref.cyclic(7, 0.01, 0.1, 5), rel=1e-6)
    if keras.backend.backend() != "jax":
        big = keras.ops.convert_to_tensor(np.int64(2**40))
        assert float(s(big)) == pytest.approx(ref.cyclic(BIG, 0.01, 0.1, 5), rel=1e-5)


@pytest.mark.parametrize(
    "step", [2**40, 2**31 + 10, np.int64(2**40), np.int64(2**32 + 4), np.uint64(2**33)]
)
def test_host_int_steps_beyond_int32_are_clamped(step):
    # Python and numpy ints are clamped before their conversion to a tensor
    # (JAX without x64 would overflow or wrap them around).
    from keras_lr.schedules._base import int_step

    assert int(keras.ops.convert_to_numpy(int_step(step))) == BIG
    s = S.InverseSqrt(1.0, warmup_steps=4)
    expected = float(keras.ops.convert_to_numpy(s(BIG)))
    assert float(keras.ops.convert_to_numpy(s(step))) == expected
    assert int(keras.ops.convert_to_numpy(int_step(np.int64(-5)))) == 0


@pytest.mark.skipif(
    not __import__("importlib").util.find_spec("torch"), reason="torch not installed"
)
class TestAgainstPyTorch:
    """PyTorch's schedulers, stepped on a dummy optimizer, as a second reference."""

    @staticmethod
    def torch_lrs(make, n, momentum_key=None):
        import torch

        param = torch.nn.Parameter(torch.zeros(1))
        if momentum_key == "betas":
            opt = torch.optim.Adam([param], lr=1.0)
        else:
            opt = torch.optim.SGD([param], lr=1.0, momentum=0.9)
        sched = make(opt)
        lrs, moms = [], []
        for _ in range(n):
            group = opt.param_groups[0]
            lrs.append(group["lr"])
            if momentum_key == "betas":
                moms.append(group["betas"][0])
            elif momentum_key:
                moms.append(group["momentum"])
            opt.step()
            sched.step()
        return np.array(lrs), np.array(moms)

    @pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
    def test_cyclic_lr(self, mode):
        import torch

        def make(opt):
            return torch.optim.lr_scheduler.CyclicLR(
                opt,
                0.01,
                0.1,
                step_size_up=4,
                step_size_down=6,
                mode=mode,
                gamma=0.99,
                base_momentum=0.85,
                max_momentum=0.95,
            )

        lrs, moms = self.torch_lrs(make, 45, "momentum")
        s = S.CyclicLR(0.01, 0.1, 4, 6, mode=mode, gamma=0.99)
        steps = np.arange(45)
        np.testing.assert_allclose(ref.values(s, steps), lrs, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(
            ref.values(s.momentum(0.85, 0.95), steps), moms, rtol=1e-5, atol=1e-7
        )

    @pytest.mark.parametrize("anneal", ["cos", "linear"])
    @pytest.mark.parametrize("three_phase", [False, True])
    def test_one_cycle(self, anneal, three_phase):
        import torch

        total = 47

        def make(opt):
            return torch.optim.lr_scheduler.OneCycleLR(
                opt,
                0.3,
                total_steps=total,
                pct_start=0.35,
                anneal_strategy=anneal,
                three_phase=three_phase,
                div_factor=20.0,
                final_div_factor=300.0,
            )

        lrs, betas = self.torch_lrs(make, total, "betas")
        s = S.OneCycle(0.3, total, 0.35, 20.0, 300.0, anneal, three_phase)
        steps = np.arange(total)
        np.testing.assert_allclose(ref.values(s, steps), lrs, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(
            ref.values(s.momentum(0.85, 0.95), steps), betas, rtol=1e-5, atol=1e-7
        )


def test_reference_sanity():
    # The references themselves, at points known by hand.
    assert ref.cyclic(5, 0.0, 1.0, 5) == 1.0 and ref.cyclic(10, 0.0, 1.0, 5) == 0.0
    assert ref.one_cycle(0, 1.0, 100, div=10.0) == pytest.approx(0.1)
    assert ref.sgdr(30, 1.0, 10, 2.0) == 1.0  # third cycle starts at 10 + 20
    assert math.isclose(ref.inverse_sqrt(400, 1.0, 100), 0.5)


@pytest.mark.parametrize(
    "t0,t_mul,m_mul",
    [(1000, 1.2, 0.5), (5, 1.1, 0.9), (10, 1.5, 1.0), (7, 1.001, 1.0)],
)
def test_cosine_restarts_peak_on_integer_cycle_start(t0, t_mul, m_mul):
    # A cycle that starts on an integer step (t0 (r**k - 1) / (r - 1) an
    # integer, found in exact rational arithmetic) has its new peak on that
    # step and the old cycle's end one step before, vectorized or scalar.
    s = S.CosineRestarts(0.1, t0, t_mul=t_mul, m_mul=m_mul, min_lr=0.0)
    starts = [
        int(a) for a in ref.sgdr_starts(t0, t_mul, 6000)[1:] if a.denominator == 1
    ]
    assert starts, "the parameters must give integer cycle starts"
    steps = sorted({b for a in starts for b in (a - 1, a, a + 1)})
    expected = np.array([ref.sgdr(n, 0.1, t0, t_mul, m_mul) for n in steps])
    check(s, steps, expected, 0.1)
    peaks = {k: 0.1 * m_mul**k for k in range(len(starts) + 2)}
    got = dict(zip(steps, ref.values(s, steps)))
    for a in starts:
        assert any(abs(got[a] - p) <= 2e-6 * p for p in peaks.values()), (a, got[a])
        assert got[a - 1] < 0.5 * got[a]  # the end of the cycle before
    scalar = ref.scalar_values(s, starts)
    np.testing.assert_allclose(scalar, [got[a] for a in starts], rtol=2e-6)


@pytest.mark.parametrize(
    "t0,t_mul,m_mul,steps",
    [
        # Cycle 11 starts at 170995.1171875: step 170995 still ends cycle 10.
        (1000, 1.5, 0.9, [170994, 170995, 170996, 170997]),
        # Cycles start at 2**k - 1: the end of cycle 29 and the start of 30.
        (1, 2.0, 1.0, [2**30 - 3, 2**30 - 2, 2**30 - 1, 2**30]),
        (100, 1.001, 1.0, [170996, 257492, 257493]),
        (7, 1.2, 1.0, [257492, 257493, 10_000_000]),
    ],
)
def test_cosine_restarts_at_large_steps(t0, t_mul, m_mul, steps):
    # Found in QA: on JAX without x64 (float32), cycle starts within 4e-6
    # relative of an integer were snapped onto it (every start above ~125k
    # steps is), so cycle 11 above began a step early, and the position in
    # a cycle drifted by up to 7e-4. The starts now come from a host table.
    s = S.CosineRestarts(0.1, t0, t_mul=t_mul, m_mul=m_mul, min_lr=0.001)
    expected = np.array([ref.sgdr(n, 0.1, t0, t_mul, m_mul, 0.001) for n in steps])
    check(s, steps, expected, 0.1)


def test_cosine_restarts_with_t_mul_near_one_is_computed_in_the_graph():
    # Over `_TABLE_MAX` cycles start below 2**31: no table; the in-graph
    # computation holds away from the (fractional) cycle boundaries.
    from keras_lr.schedules import cosine

    s = S.CosineRestarts(0.1, 10, t_mul=1.0001, min_lr=0.001)
    assert s._table is None
    assert S.CosineRestarts(0.1, 10, t_mul=1.01)._table is not None
    starts = [float(a) for a in ref.sgdr_starts(10, 1.0001, 400)]
    steps = [n for n in range(0, 400, 7) if min(abs(n - a) for a in starts) > 1.0]
    expected = np.array([ref.sgdr(n, 0.1, 10, 1.0001, 1.0, 0.001) for n in steps])
    got = ref.values(s, steps)
    # In float32 (JAX without x64) the position in a cycle is good to about
    # 1e-5 of the cycle there (documented); in float64, to float32 rounding.
    wide = keras.backend.backend() != "jax" or bool(
        __import__("jax").config.jax_enable_x64
    )
    if wide:
        np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-8)
    else:  # the position, about 1e-5 of a cycle: 2e-6 of the peak at most
        np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    assert cosine._TABLE_MAX >= 1 << 14


def test_exp_range_follows_gamma_power_step_at_large_steps():
    # Found in QA: `gamma**step` with a float32 gamma (0.99994, Smith's
    # value, is off by 2e-8) drifted by 1e-3 relative at step 50,000.
    s = S.CyclicLR(0.0, 1.0, step_size_up=50_000, mode="exp_range", gamma=0.99994)
    steps = [12_345, 50_000, 150_000]
    expected = np.array(
        [
            ref.cyclic(n, 0.0, 1.0, 50_000, mode="exp_range", gamma=0.99994)
            for n in steps
        ]
    )
    got = ref.values(s, steps)
    np.testing.assert_allclose(got, expected, rtol=3e-6)
