"""`LRRangeTestResult`: the curve of a range test and what it suggests."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keras_lr import suggest
from keras_lr._detect import ema_smooth
from keras_lr._validate import check_bool, check_choice, check_int, check_smoothing

__all__ = ["LRRangeTestResult", "RangeTestWarning"]

#: Fewer finite points than this and the curve can't be trusted.
MIN_POINTS = 20


class RangeTestWarning(UserWarning):
    """A range-test curve that should not be trusted as it is.

    `LRRangeTestResult.suggestion` emits one for each finding of
    `LRRangeTestResult.diagnostics`; silence it with ``warn=False``.

    Example:

    >>> flat = LRRangeTestResult(np.geomspace(1e-6, 1.0, 50), np.full(50, 2.3))
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = flat.suggestion()
    >>> [issubclass(w.category, RangeTestWarning) for w in caught]
    [True, True]
    """


@dataclass(eq=False)
class LRRangeTestResult:
    """The curve of an LR range test.

    Attributes:
        lrs: the learning rate of each recorded step.
        losses: each step's own loss (not the epoch's running mean).
        smoothing: EMA factor used for `smoothed_losses`.
        diverged: whether the sweep stopped on divergence.
        divergence_step: index of the step that diverged, or None.
        val_lrs: rates at which validation loss was measured (may be empty).
        val_losses: the validation losses there.
        params: the sweep's settings (start_lr, end_lr, num_steps, mode, ...).

    Raises:
        ValueError: at construction, if `lrs` and `losses` differ in length,
            a rate in `lrs` or `val_lrs` is not finite and > 0, or `lrs` is
            not strictly increasing.

    Example:

    >>> lrs = np.geomspace(1e-6, 1.0, 100)
    >>> losses = 2.3 - 2.0 / (1 + np.exp(-3 * (np.log10(lrs) + 3))) + 30 * lrs**2
    >>> result = LRRangeTestResult(lrs, losses, diverged=True)
    >>> lo, hi = result.suggest_range()
    >>> lo < result.suggestion() < hi
    True
    >>> LRRangeTestResult.from_dict(result.to_dict()).losses.shape
    (100,)
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothing: float = 0.98
    diverged: bool = False
    divergence_step: int | None = None
    val_lrs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.lrs = np.asarray(self.lrs, dtype=np.float64).reshape(-1)
        self.losses = np.asarray(self.losses, dtype=np.float64).reshape(-1)
        self.val_lrs = np.asarray(self.val_lrs, dtype=np.float64).reshape(-1)
        self.val_losses = np.asarray(self.val_losses, dtype=np.float64).reshape(-1)
        self.smoothing = check_smoothing("smoothing", self.smoothing)
        if self.lrs.shape != self.losses.shape:
            raise ValueError(
                "Arguments `lrs` and `losses` must have the same length. "
                f"Received: len(lrs)={self.lrs.size}, "
                f"len(losses)={self.losses.size}"
            )
        for name in ("lrs", "val_lrs"):
            rates = getattr(self, name)
            bad = ~(np.isfinite(rates) & (rates > 0))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(
                    f"Argument `{name}` must hold finite learning rates > 0. "
                    f"Received: {name}[{i}]={rates[i]}"
                )
        if self.val_lrs.shape != self.val_losses.shape:
            raise ValueError(
                "Arguments `val_lrs` and `val_losses` must have the same length. "
                f"Received: len(val_lrs)={self.val_lrs.size}, "
                f"len(val_losses)={self.val_losses.size}"
            )
        self.diverged = check_bool("diverged", self.diverged)
        if self.divergence_step is not None:
            self.divergence_step = check_int(
                "divergence_step", self.divergence_step, minimum=0
            )
            if self.divergence_step >= max(self.lrs.size, 1):
                raise ValueError(
                    "Argument `divergence_step` must index a recorded step "
                    f"(< {self.lrs.size}). Received: "
                    f"divergence_step={self.divergence_step}"
                )
        if not isinstance(self.params, dict):
            raise TypeError(
                "Argument `params` must be a dict. Received: "
                f"params={self.params!r:.80} (of type {type(self.params).__name__})"
            )
        # Rates not strictly increasing are refused here rather than by the
        # first suggestion or plot, with the same check.
        suggest.clean_curve(self.lrs, self.losses)

    def __eq__(self, other: object) -> bool:
        """Equal curves, flags and settings (arrays compared by value)."""
        if not isinstance(other, LRRangeTestResult):
            return NotImplemented
        arrays = ("lrs", "losses", "val_lrs", "val_losses")
        return (
            all(
                np.array_equal(getattr(self, a), getattr(other, a), equal_nan=True)
                for a in arrays
            )
            and (self.smoothing, self.diverged, self.divergence_step)
            == (other.smoothing, other.diverged, other.divergence_step)
            and self.params == other.params
        )

    __hash__ = None  # mutable, as a dataclass's

    @property
    def smoothed_losses(self) -> np.ndarray:
        """Bias-corrected EMA of `losses` (``smoothing`` as beta)."""
        return ema_smooth(self.losses, self.smoothing)

    def __len__(self) -> int:
        return int(self.lrs.size)

    def diagnostics(self) -> list[str]:
        """Why the curve may not be trusted; an empty list if it can be.

        Checks: weights that turned non-finite under finite losses
        (``params["nonfinite_weights"]``), a sweep cut short (`fit` ended
        before its `num_steps`), too
        few finite points, no descent (the loss never falls meaningfully
        below where it started), a sweep that never diverged and whose loss
        did not rise clearly after its minimum either (the curve may not
        show where the rate becomes too high), and one whose loss was still
        falling at its end.
        """
        lrs, losses = suggest.clean_curve(self.lrs, self.losses)
        found = []
        if self.params.get("nonfinite_weights"):
            found.append(
                "the weights were not finite at the end of the sweep although "
                "every recorded loss was: a NaN or Inf in the data (on "
                "TensorFlow a ReLU turns NaN into 0 and hides it from the loss) "
                "or an optimizer producing NaN updates; from that step on the "
                "curve is a dead network's. Check the data for NaN and Inf "
                "(`np.isfinite(x).all()`) and the optimizer"
            )
        planned = int(self.params.get("num_steps") or 0)
        spe = int(self.params.get("steps_per_execution") or 1)
        ran = len(self.lrs)
        cut_short = not self.diverged and planned and ran + spe <= planned
        if cut_short:
            end = float(self.lrs[-1]) if ran else float("nan")
            found.append(
                f"the sweep ran {ran} of its {planned} steps (to lr {end:.3g} of "
                f"end_lr {self.params.get('end_lr', float('nan')):.3g}): `fit` "
                "ended first; run more epochs or lower num_steps"
            )
            if lrs.size < MIN_POINTS:
                return found
        if lrs.size < MIN_POINTS:
            found.append(
                f"only {lrs.size} finite points (fewer than {MIN_POINTS}): "
                "run more steps or start the sweep lower"
            )
            return found
        smoothed = suggest.zero_phase_smooth(losses, max(1.0, lrs.size / 25.0))
        head = float(np.median(smoothed[: max(3, lrs.size // 10)]))
        low = float(np.min(smoothed))
        # Robust step-to-step noise: MAD of differences, as a std of one loss.
        diffs = np.diff(losses)
        noise = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2)
        if not head - low > max(0.05 * abs(head), 2.0 * noise):
            found.append(
                "no descent: the loss never fell clearly below its starting "
                "level; widen the sweep (lower start_lr, higher end_lr) or "
                "check the data and the loss"
            )
        # A curve that rose clearly after its minimum (by a quarter of its
        # fall, by more than the noise and by 1% of its level) shows where
        # the rate becomes too high, whether or not the rise reached the
        # divergence threshold.
        rise = float(smoothed[-1]) - low
        rose = rise > max(0.25 * (head - low), 2.0 * noise, 0.01 * abs(head))
        if not self.diverged and not cut_short and not rose:
            found.append(
                "the sweep never diverged: the curve may not show where the "
                "rate becomes too high; raise end_lr or num_steps"
            )
            if int(np.argmin(smoothed)) >= lrs.size - max(2, lrs.size // 10):
                found.append(
                    "the loss was still falling at the end of the sweep: a "
                    "suggestion can only be its top rates; raise end_lr"
                )
        return found

    def suggestion(self, method: str = "default", *, warn: bool = True) -> float:
        """A learning rate read off the curve.

        Args:
            method: ``"default"`` (keras_lr's curve rule), ``"valley"``,
                ``"steep"``, ``"minimum"`` (fastai's rules) or
                ``"steepest"`` (torch-lr-finder's). See `keras_lr.suggest`.
            warn: emit a `RangeTestWarning` for each `diagnostics()` finding.

        Returns:
            The suggested learning rate.
        """
        check_choice("method", method, tuple(suggest.RULES))
        if check_bool("warn", warn):
            self._warn()
        rule = suggest.RULES[method]
        if method == "default":
            return rule(self.lrs, self.losses)
        return rule(self.lrs, self.losses, smoothing=self.smoothing)

    def suggest_range(self) -> tuple[float, float]:
        """A ``(min_lr, max_lr)`` pair for cyclical and 1cycle schedules.

        ``max_lr`` is the rate at the lowest point of the zero-phase
        smoothed curve, the top of the region where the loss still falls
        (Smith 2017 and 2018 take the cycle's top there,
        arXiv:1506.01186, arXiv:1803.09820); ``min_lr`` is a tenth of it.
        `suggestion()` usually lies between the two; on a curve whose
        descent starts far below its minimum it can lie under ``min_lr``.
        """
        lrs, losses = suggest.clean_curve(self.lrs, self.losses)
        if lrs.size < 5:
            raise ValueError(
                "The curve has fewer than 5 finite points: no range can be read off it."
            )
        smoothed = suggest.zero_phase_smooth(losses, max(1.0, lrs.size / 25.0))
        max_lr = float(lrs[int(np.argmin(smoothed))])
        return max_lr / 10.0, max_lr

    def _warn(self) -> None:
        for finding in self.diagnostics():
            warnings.warn(f"LR range test: {finding}.", RangeTestWarning, stacklevel=3)

    def plot(self, ax: Any = None, *, methods: tuple[str, ...] | None = None) -> Any:
        """Plots the curve with its suggestions marked. See `keras_lr.plot`."""
        from keras_lr.plot import plot_range_test

        return plot_range_test(self, ax=ax, methods=methods)

    # Serialisation -----------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict of plain Python values.

        The curves are lists of floats, with NaN as None and infinities as
        the strings ``"Infinity"`` and ``"-Infinity"`` (strict JSON has
        neither), so that `from_dict` gives back the same arrays. numpy
        scalars and arrays in `params` become Python numbers and lists, and
        a NaN or an infinity there becomes ``{"__float__": "NaN"}`` (or
        ``"Infinity"``, ``"-Infinity"``): a parameter may itself be None or
        one of those strings.

        Example:

        >>> r = LRRangeTestResult([1e-3, 1e-2, 1e-1], [1.0, np.inf, np.nan])
        >>> r.to_dict()["losses"]
        [1.0, 'Infinity', None]
        """

        def listify(a: np.ndarray) -> list:
            return [_encode_float(float(v)) for v in a]

        step = self.divergence_step
        return {
            "lrs": listify(self.lrs),
            "losses": listify(self.losses),
            "smoothing": float(self.smoothing),
            "diverged": bool(self.diverged),
            "divergence_step": None if step is None else int(step),
            "val_lrs": listify(self.val_lrs),
            "val_losses": listify(self.val_losses),
            "params": _plain(dict(self.params)),
        }

    @classmethod
    def from_dict(cls, data: dict) -> LRRangeTestResult:
        """Inverse of `to_dict`.

        Raises:
            TypeError: if `data` is not a dict.
            ValueError: if it lacks ``lrs`` or ``losses``.
        """
        if not isinstance(data, dict):
            raise TypeError(
                "Argument `data` must be a dict (the output of `to_dict`). "
                f"Received: data={data!r:.80} (of type {type(data).__name__})"
            )
        missing = [key for key in ("lrs", "losses") if key not in data]
        if missing:
            raise ValueError(
                f"Argument `data` must have the keys 'lrs' and 'losses' (the "
                f"output of `to_dict`). Missing: {missing}; received keys: "
                f"{sorted(map(str, data))}"
            )

        def arrayify(values) -> np.ndarray:
            return np.array([_decode_float(v) for v in values or []], dtype=np.float64)

        return cls(
            lrs=arrayify(data["lrs"]),
            losses=arrayify(data["losses"]),
            smoothing=float(data.get("smoothing", 0.98)),
            diverged=bool(data.get("diverged", False)),
            divergence_step=data.get("divergence_step"),
            val_lrs=arrayify(data.get("val_lrs")),
            val_losses=arrayify(data.get("val_losses")),
            params=_unplain(dict(data.get("params", {}))),
        )

    def to_json(self, path: str | Path | None = None) -> str:
        """The result as JSON text; also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> LRRangeTestResult:
        """Reads `to_json`'s output from a path or from the text itself."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))

    def to_csv(self, path: str | Path | None = None) -> str:
        """Columns ``step, lr, loss, smoothed_loss``; written to `path` if given."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["step", "lr", "loss", "smoothed_loss"])
        for i, (lr, loss, smooth) in enumerate(
            zip(self.lrs, self.losses, self.smoothed_losses)
        ):
            writer.writerow(
                [i, repr(float(lr)), repr(float(loss)), repr(float(smooth))]
            )
        text = buffer.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_csv(
        cls, path: str | Path, *, smoothing: float = 0.98
    ) -> LRRangeTestResult:
        """Reads a curve written by `to_csv`."""
        reader = csv.DictReader(Path(path).read_text().splitlines())
        rows = list(reader)
        missing = {"lr", "loss"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"The CSV file {str(path)!r} must have the columns 'lr' and 'loss' "
                "(as `to_csv` writes them). Received columns: "
                f"{list(reader.fieldnames or ())}"
            )
        return cls(
            lrs=[float(r["lr"]) for r in rows],
            losses=[float(r["loss"]) for r in rows],
            smoothing=smoothing,
        )

    def __repr__(self) -> str:
        return (
            f"LRRangeTestResult(points={len(self)}, diverged={self.diverged}, "
            f"lr=[{self.lrs[0] if len(self) else float('nan'):.3g}, "
            f"{self.lrs[-1] if len(self) else float('nan'):.3g}])"
        )


_INFINITIES = {"Infinity": np.inf, "-Infinity": -np.inf}
#: The key of a non-finite float in `params` (see `to_dict`).
_FLOAT_TAG = "__float__"


def _encode_float(value: float) -> float | str | None:
    if np.isnan(value):
        return None
    if np.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _decode_float(value: Any) -> float:
    if value is None:
        return np.nan
    if isinstance(value, str):
        if value not in _INFINITIES:
            raise ValueError(
                "A curve value must be a number, None (NaN), 'Infinity' or "
                f"'-Infinity'. Received: {value!r}"
            )
        return _INFINITIES[value]
    return float(value)


def _plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into Python values."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        # Strict JSON has no NaN or infinities. Tagged: a parameter may be
        # None, or a string such as "NaN", itself.
        return {_FLOAT_TAG: "NaN" if math.isnan(value) else _encode_float(value)}
    return value


def _unplain(value: Any) -> Any:
    """Reverses `_plain`'s encoding of infinities and NaN in `params`."""
    if isinstance(value, dict):
        if set(value) == {_FLOAT_TAG}:
            text = value[_FLOAT_TAG]
            return math.nan if text == "NaN" else float(_decode_float(text))
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value
