"""`plot_range_test`: method names, rules that do not apply, odd results."""

from __future__ import annotations

import numpy as np
import pytest

from keras_lr import LRRangeTestResult
from keras_lr.plot import plot_range_test

LRS = np.geomspace(1e-6, 1.0, 60)
LOSSES = 2.3 - np.tanh(np.log10(LRS) + 3)


def labels(fig):
    lines = fig.axes[0].get_lines()
    return [line.get_label() for line in lines if not line.get_label().startswith("_")]


@pytest.mark.parametrize("methods", [("valey",), ("valley", "median"), "valey"])
def test_unknown_method_is_refused(methods):
    # Before: the typo was swallowed with the rules that do not apply.
    result = LRRangeTestResult(LRS, LOSSES, diverged=True)
    with pytest.raises(ValueError, match=r"`methods`.*'valley'.*unknown: '"):
        plot_range_test(result, methods=methods)


def test_named_methods_are_marked():
    result = LRRangeTestResult(LRS, LOSSES, diverged=True)
    marks = labels(plot_range_test(result, methods=("valley", "steep")))
    assert [lb.split(":")[0] for lb in marks[3:]] == ["valley", "steep"]
    single = labels(plot_range_test(result, methods="minimum"))
    assert [lb.split(":")[0] for lb in single[3:]] == ["minimum"]


def test_rules_that_do_not_apply_are_skipped():
    # 4 finite points: `steep`, `minimum` and `steepest` apply (3), the
    # others (5) do not.
    losses = LOSSES.copy()
    losses[4:] = np.nan
    result = LRRangeTestResult(LRS, losses, diverged=True, divergence_step=4)
    marks = [lb.split(":")[0] for lb in labels(plot_range_test(result))[3:]]
    assert marks == ["steep", "minimum", "steepest"]


def test_empty_result_with_a_divergence_step_plots():
    # Before: IndexError on lrs[min(divergence_step, -1)].
    result = LRRangeTestResult([], [], diverged=True, divergence_step=0)
    fig = plot_range_test(result)
    assert labels(fig)[:3] == [
        "loss of each step",
        "smoothed loss (EMA 0.98)",
        "trend (no lag)",
    ]
    assert all(line.get_xdata().size == 0 for line in fig.axes[0].get_lines())


def test_an_empty_selection_of_methods_marks_no_rule():
    lrs = np.geomspace(1e-6, 1.0, 100)
    losses = 2.3 - 2.0 / (1 + np.exp(-3 * (np.log10(lrs) + 3))) + 30 * lrs**2
    result = LRRangeTestResult(lrs, losses, diverged=True)
    none = plot_range_test(result, methods=())
    every = plot_range_test(result)
    assert len(every.axes[0].get_lines()) > len(none.axes[0].get_lines())
    assert not none.axes[0].get_legend() or all(
        rule not in text.get_text()
        for text in none.axes[0].get_legend().get_texts()
        for rule in ("valley", "steep", "minimum")
    )


def test_an_ax_that_is_not_an_axes_is_refused():
    # Before: AttributeError ('Figure' object has no attribute 'plot', ...),
    # also for `methods` passed positionally, where `ax` goes.
    from matplotlib.figure import Figure

    result = LRRangeTestResult(LRS, LOSSES, diverged=True)
    fig = Figure()
    axes = fig.subplots(2)
    for ax in (fig, axes, ("valley",), "ax"):
        with pytest.raises(TypeError, match=r"`ax` must be a matplotlib `Axes`"):
            plot_range_test(result, ax)
    assert plot_range_test(result, axes[1]) is fig
    assert len(axes[1].get_lines()) > 3 and not axes[0].get_lines()


@pytest.mark.parametrize("methods", [5, [None], [["valley"]], ("valley", 3)])
def test_methods_that_are_not_names_are_refused(methods):
    # Before: "'int' object is not iterable", "unhashable type: 'list'", or
    # None reported as an unknown rule.
    result = LRRangeTestResult(LRS, LOSSES, diverged=True)
    with pytest.raises(TypeError, match=r"`methods` must be a rule name or a seq"):
        plot_range_test(result, methods=methods)


@pytest.mark.parametrize("result", [None, {"lrs": LRS, "losses": LOSSES}])
def test_a_result_that_is_not_a_range_test_result_is_refused(result):
    # Before: AttributeError: ... has no attribute 'lrs'.
    with pytest.raises(TypeError, match=r"`result` must be an `LRRangeTestResult`"):
        plot_range_test(result)


def test_all_nan_result_spans_the_sweep_and_draws_without_warning():
    # Before: the x range was the divergence line's alone (1e-7 to 1e-5, not
    # the sweep's), and drawing warned "identical low and high xlims".
    import io
    import warnings

    result = LRRangeTestResult(
        LRS, np.full(LRS.size, np.nan), diverged=True, divergence_step=0
    )
    fig = plot_range_test(result)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(io.BytesIO(), format="png")
    np.testing.assert_allclose(fig.axes[0].get_xlim(), (1e-6, 1.0))


@pytest.mark.parametrize(
    "lrs, losses", [(LRS, np.full(LRS.size, 2.3)), ([1e-3], [2.3])]
)
def test_flat_curve_gets_a_y_range_of_its_own_scale(lrs, losses):
    # Before: 2.3 +- 1e-13, a y axis of float rounding.
    fig = plot_range_test(LRRangeTestResult(lrs, losses))
    low, high = fig.axes[0].get_ylim()
    assert low < 2.3 < high
    np.testing.assert_allclose(high - low, 4 * 0.08 * 2.3e-3)
