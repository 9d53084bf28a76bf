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
