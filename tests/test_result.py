import json
import math
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


def test_a_clear_rise_without_divergence_is_not_flagged():
    # Falls from 2.3 to 0.3, then rises back to about 1.2 by the end: under
    # the divergence threshold (4x the best), but the curve shows where the
    # rate becomes too high.
    noise = 0.02 * np.random.default_rng(0).standard_normal(100)
    rise = np.clip(X + 1.5, 0, None)
    risen = 2.3 - 2.0 / (1 + np.exp(-3 * (X + 3))) + 0.35 * rise + noise
    assert risen[np.argmin(risen) :].max() < 4 * risen.min()
    found = LRRangeTestResult(LRS, risen, diverged=False).diagnostics()
    assert not any("never diverged" in f for f in found), found
    # The same descent with a barely-lifting end (2% of its fall) is flagged.
    flat_end = 2.3 - 2.0 / (1 + np.exp(-3 * (X + 3))) + 0.015 * rise + noise
    found = LRRangeTestResult(LRS, flat_end, diverged=False).diagnostics()
    assert any("never diverged" in f for f in found), found


def test_nonfinite_weights_under_finite_losses_are_a_finding(tmp_path):
    # The good curve would warn nothing; weights found non-finite at the end
    # of its sweep make it untrustworthy, and the flag survives a round trip.
    poisoned = LRRangeTestResult(
        LRS, GOOD, diverged=True, divergence_step=99,
        params={"nonfinite_weights": True},
    )  # fmt: skip
    found = poisoned.diagnostics()
    assert "weights were not finite at the end of the sweep" in found[0]
    with pytest.warns(RangeTestWarning, match="np.isfinite"):
        poisoned.suggestion()
    path = tmp_path / "r.json"
    poisoned.to_json(path)
    assert LRRangeTestResult.from_json(path).params["nonfinite_weights"] is True
    clean = LRRangeTestResult(
        LRS, GOOD, diverged=True, divergence_step=99,
        params={"nonfinite_weights": False},
    )  # fmt: skip
    assert clean.diagnostics() == []


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


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_rates_must_be_finite_and_positive(bad):
    with pytest.raises(ValueError, match=rf"`lrs` must hold .*lrs\[1\]={bad}"):
        LRRangeTestResult([0.1, bad, 0.3], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"`val_lrs` must hold"):
        LRRangeTestResult(LRS, GOOD, val_lrs=[bad], val_losses=[1.0])


@pytest.mark.parametrize("rates", [[0.1, 0.1, 0.3], [0.1, 0.3, 0.2]])
def test_rates_must_be_strictly_increasing(rates, tmp_path):
    # Refused at construction, as the suggestions and the plot would refuse
    # them later; the JSON and CSV readers go through the same check.
    with pytest.raises(ValueError, match=r"strictly increasing.*lrs\[\d\]="):
        LRRangeTestResult(rates, [1.0, 1.0, 1.0])
    data = LRRangeTestResult([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]).to_dict()
    data["lrs"] = rates
    with pytest.raises(ValueError, match="strictly increasing"):
        LRRangeTestResult.from_dict(data)
    with pytest.raises(ValueError, match="strictly increasing"):
        LRRangeTestResult.from_json(json.dumps(data))
    path = tmp_path / "curve.csv"
    LRRangeTestResult([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]).to_csv(path)
    lines = path.read_text().splitlines()
    lines[1:] = [f"{i},{lr},1.0,1.0" for i, lr in enumerate(rates)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="strictly increasing"):
        LRRangeTestResult.from_csv(path)


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


def test_json_round_trip_keeps_infinities_and_nan(tmp_path):
    # Before: to_dict wrote every non-finite value as None: inf came back NaN.
    losses = GOOD.copy()
    losses[[90, 95, 99]] = [np.inf, -np.inf, np.nan]
    result = LRRangeTestResult(
        LRS,
        losses,
        diverged=True,
        divergence_step=90,
        val_lrs=[1e-3, 1e-2],
        val_losses=[np.inf, 1.5],
    )
    text = result.to_json(tmp_path / "curve.json")
    json.loads(text, parse_constant=pytest.fail)  # strict JSON: no Infinity/NaN
    for back in (
        LRRangeTestResult.from_json(text),
        LRRangeTestResult.from_json(tmp_path / "curve.json"),
    ):
        assert back.losses.tobytes() == result.losses.tobytes()
        assert back.lrs.tobytes() == result.lrs.tobytes()
        assert back.val_losses.tobytes() == result.val_losses.tobytes()
        assert back.divergence_step == 90 and back.diverged


def test_from_dict_refuses_an_unknown_string():
    data = LRRangeTestResult(LRS[:2], [1.0, 2.0]).to_dict()
    data["losses"][1] = "inf?"
    with pytest.raises(ValueError, match="Received: 'inf\\?'"):
        LRRangeTestResult.from_dict(data)


def test_to_json_converts_numpy_values():
    # Before: json.dumps raised TypeError on np.float32.
    result = LRRangeTestResult(
        LRS,
        GOOD,
        smoothing=np.float32(0.5),
        divergence_step=np.int64(7),
        params={
            "end_lr": np.float32(1.0),
            "num_steps": np.int64(100),
            "flags": (np.bool_(True), np.arange(2)),
            "nested": {"lrs": np.array([0.5, 0.25])},
        },
    )
    data = json.loads(result.to_json())
    assert data["params"] == {
        "end_lr": 1.0,
        "num_steps": 100,
        "flags": [True, [0, 1]],
        "nested": {"lrs": [0.5, 0.25]},
    }
    assert type(data["params"]["num_steps"]) is int
    assert data["smoothing"] == 0.5 and data["divergence_step"] == 7
    back = LRRangeTestResult.from_json(result.to_json())
    assert back.params["end_lr"] == 1.0 and back.smoothing == 0.5


@pytest.mark.parametrize("smoothing", [1.0, 1.5, -0.1, float("nan")])
def test_smoothing_must_be_in_the_unit_interval(smoothing):
    # Before: smoothing=1.0 gave all-NaN smoothed losses and a wrong valley.
    with pytest.raises(ValueError, match=r"`smoothing` must be in \[0.0, 1.0\)"):
        LRRangeTestResult(LRS, GOOD, smoothing=smoothing)
    with pytest.raises(TypeError, match="`smoothing` must be a number"):
        LRRangeTestResult(LRS, GOOD, smoothing="0.9")


def test_from_csv_checks_smoothing(tmp_path):
    path = tmp_path / "curve.csv"
    LRRangeTestResult(LRS, GOOD).to_csv(path)
    with pytest.raises(ValueError, match="`smoothing` must be in"):
        LRRangeTestResult.from_csv(path, smoothing=1.0)


def test_json_is_strict_when_params_hold_infinities():
    result = LRRangeTestResult(
        [1e-3, 1e-2, 1e-1],
        [1.0, 0.5, 2.0],
        params={"diverge_threshold": float("inf"), "floor": np.float32(-np.inf)},
    )
    text = result.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(name))
    back = LRRangeTestResult.from_json(text)
    assert back.params["diverge_threshold"] == float("inf")
    assert back.params["floor"] == float("-inf")


def test_json_keeps_nan_and_none_apart_in_params():
    result = LRRangeTestResult(
        [1e-3, 1e-2, 1e-1],
        [1.0, 0.5, 2.0],
        params={
            "best": float("nan"),
            "steps": None,
            "grid": [np.float64("nan"), 1.0],
            "notes": ["NaN", "Infinity", "-Infinity"],  # strings stay strings
        },
    )
    text = result.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(name))
    back = LRRangeTestResult.from_json(text).params
    assert math.isnan(back["best"]) and back["steps"] is None
    assert math.isnan(back["grid"][0]) and back["grid"][1] == 1.0
    assert back["notes"] == ["NaN", "Infinity", "-Infinity"]


def test_a_loss_still_falling_at_the_end_is_a_finding():
    falling = LRRangeTestResult(LRS, 2.3 - 2.0 / (1 + np.exp(-3 * X)), diverged=False)
    assert any("still falling at the end" in d for d in falling.diagnostics())
    # A minimum inside the sweep is no such finding, diverged or not.
    for diverged in (False, True):
        result = LRRangeTestResult(LRS, GOOD, diverged=diverged)
        assert not any("still falling" in d for d in result.diagnostics())


def test_from_dict_without_the_curve_is_a_clear_error():
    # Found in QA: a bare KeyError.
    with pytest.raises(ValueError, match=r"must have the keys 'lrs' and 'losses'"):
        LRRangeTestResult.from_json('{"losses": [1.0, 2.0]}')
    with pytest.raises(TypeError, match=r"must be a dict"):
        LRRangeTestResult.from_dict([1.0, 2.0])


def test_results_compare_by_value(tmp_path):
    # The dataclass's generated `==` compared arrays as a tuple and raised.
    lrs, losses = np.geomspace(1e-6, 1.0, 100), np.linspace(2.0, 1.0, 100)
    r = LRRangeTestResult(lrs, losses, params={"num_steps": 100})
    assert r == LRRangeTestResult.from_json(r.to_json())
    assert LRRangeTestResult([1e-3], [1.0]) == LRRangeTestResult([1e-3], [1.0])
    assert r != LRRangeTestResult(lrs, 2 * losses, params={"num_steps": 100})
    assert r != LRRangeTestResult(lrs, losses, diverged=True)
    assert (r == "a curve") is False


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"val_lrs": [1e-3, 1e-2], "val_losses": [1.0]},
            ValueError,
            "`val_lrs` and `val_losses` must have the same length",
        ),
        ({"divergence_step": 5.0}, TypeError, "`divergence_step` must be an integer"),
        ({"divergence_step": -1}, ValueError, "`divergence_step` must be >= 0"),
        ({"divergence_step": 100}, ValueError, r"must index a recorded step \(< 100\)"),
        ({"diverged": "no"}, TypeError, "`diverged` must be a bool"),
        ({"params": None}, TypeError, "`params` must be a dict"),
    ],
)
def test_other_fields_are_checked_at_construction(kwargs, error, match):
    # They failed later, in a plot or a suggestion, with an IndexError, an
    # AttributeError or a matplotlib error (or, for "no", silently).
    lrs, losses = np.geomspace(1e-6, 1.0, 100), np.linspace(2.0, 1.0, 100)
    with pytest.raises(error, match=match):
        LRRangeTestResult(lrs, losses, **kwargs)


def test_suggestion_warn_must_be_a_bool():
    r = LRRangeTestResult(np.geomspace(1e-6, 1.0, 50), np.full(50, 2.3))
    with pytest.raises(TypeError, match="`warn` must be a bool"):
        r.suggestion(warn="no")


def test_from_csv_names_missing_columns(tmp_path):
    path = tmp_path / "curve.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"columns 'lr' and 'loss'.*\['a', 'b'\]"):
        LRRangeTestResult.from_csv(path)


def test_plot_on_a_subfigure_returns_the_root_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subfigures(1, 2)[0].subplots()
    r = LRRangeTestResult(np.geomspace(1e-6, 1.0, 50), np.linspace(2.0, 1.0, 50))
    out = r.plot(ax=ax)
    assert out is fig
    out.savefig(tmp_path / "x.png")
