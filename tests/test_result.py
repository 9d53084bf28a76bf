import json
import warnings

import numpy as np
import pytest

from keras_lr import LRRangeTestResult, RangeTestWarning

LRS = np.geomspace(1e-6, 10.0, 100)
X = np.log10(LRS)
GOOD = 2.3 - 2.0 / (1 + np.exp(-3 * (X + 3))) + np.exp(3 * (X + 1.5))


def test_suggestions_and_range_on_a_good_curve():
    result = LRRangeTestResult(LRS, GOOD, diverged=True, divergence_step=99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trustworthy curve warns nothing
        lr = result.suggestion()
    low, high = result.suggest_range()
    assert low < lr < high and high / low == pytest.approx(10.0)
    assert high == pytest.approx(LRS[np.argmin(GOOD)], rel=0.3)
    for method in ("valley", "steep", "minimum", "steepest"):
        assert 1e-6 < result.suggestion(method) < 10.0
    with pytest.raises(ValueError, match="`method` must be one of"):
        result.suggestion("median")


def test_warnings_for_untrustworthy_curves():
    flat = LRRangeTestResult(LRS, np.full(100, 2.3), diverged=False)
    with pytest.warns(RangeTestWarning) as record:
        flat.suggestion()
    messages = " ".join(str(w.message) for w in record)
    assert "no descent" in messages and "never diverged" in messages
    short = LRRangeTestResult(LRS[:12], GOOD[:12], diverged=True)
    assert any("only 12 finite points" in d for d in short.diagnostics())
    assert flat.diagnostics()


def test_smoothed_losses_are_the_debiased_ema():
    result = LRRangeTestResult(LRS[:3], [1.0, 2.0, 3.0], smoothing=0.5)
    np.testing.assert_allclose(result.smoothed_losses, [1.0, 5 / 3, 17 / 7])


def test_dict_json_csv_round_trips(tmp_path):
    losses = GOOD.copy()
    losses[-1] = np.nan
    result = LRRangeTestResult(
        LRS,
        losses,
        smoothing=0.9,
        diverged=True,
        divergence_step=99,
        val_lrs=[1e-3],
        val_losses=[1.5],
        params={"num_steps": 100},
    )
    back = LRRangeTestResult.from_dict(json.loads(json.dumps(result.to_dict())))
    np.testing.assert_array_equal(back.lrs, result.lrs)
    np.testing.assert_array_equal(back.losses, result.losses)  # NaN kept
    assert back.divergence_step == 99 and back.params == {"num_steps": 100}
    path = tmp_path / "curve.json"
    result.to_json(path)
    assert LRRangeTestResult.from_json(path).smoothing == 0.9
    csv_path = tmp_path / "curve.csv"
    text = result.to_csv(csv_path)
    assert text.splitlines()[0] == "step,lr,loss,smoothed_loss"
    from_csv = LRRangeTestResult.from_csv(csv_path, smoothing=0.9)
    np.testing.assert_array_equal(from_csv.lrs, result.lrs)
    np.testing.assert_array_equal(from_csv.losses[:-1], result.losses[:-1])


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="same length"):
        LRRangeTestResult([0.1, 0.2], [1.0])


def test_plot_returns_a_figure_with_marks(tmp_path):
    result = LRRangeTestResult(LRS, GOOD, diverged=True, divergence_step=99)
    fig = result.plot()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(label.startswith("default:") for label in labels)
    assert any(label.startswith("valley:") for label in labels)
    fig.savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
