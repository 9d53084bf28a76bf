"""Read a training history the way a practitioner reads it, and name the problem.

`diagnose` looks at the per-epoch curves of a `History` and returns a
`Diagnosis`: a verdict, the figures it was drawn from, and what to change.
It encodes the rules of thumb of learning-rate tuning (Smith, 2018,
arXiv:1803.09820; Goodfellow, Bengio & Courville, 2016, section 11.4.1;
Karpathy, "A Recipe for Training Neural Networks", 2019):

- **too high**: the loss diverges (NaN), rises, or jumps back up between
  epochs; validation accuracy swings up and down or falls; or the run never
  learns at all and stalls where it started without a steady descent (a
  rate so high that it has killed the network: the loss goes back up, the
  validation loss rises, or the accuracy is a constant prediction's).
- **too low**: the loss falls steadily but very slowly (or, with no sign
  of a stall, does not move at all), or each epoch still
  gains about as much as the first one did (the run has not reached the
  part of its curve where returns diminish: it is still in its transient),
  or the model underfits: the training loss, averaged over the last epoch,
  is still above the validation loss measured after it.
- **overfitting**: the training loss keeps falling while the validation
  loss has turned and risen: a regularisation or early-stopping matter,
  not a rate problem.
- **good**: none of the above.

Only the run's own curves are used: what "slow" means is measured against
the run's own first epoch, never against a fixed loss value, so the rules
carry over between tasks and losses. Everything here is numpy and pure
Python; no keras import.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RULES", "Diagnosis", "diagnose"]

VERDICTS = ("good", "too_high", "too_low", "overfitting")

_ACC_KEYS = (
    "accuracy",
    "acc",
    "sparse_categorical_accuracy",
    "categorical_accuracy",
    "binary_accuracy",
)

#: With a fixed rate the epoch means of the training loss fall (nearly)
#: monotonically; a mean this far above the best one before it is a jump up.
REBOUND = 0.10
#: A run has fitted its training data when its training accuracy reached
#: this (or, without an accuracy, its training loss fell to `FITTED_LOSS`
#: of the first epoch's). Jumps after that are the late instability of a
#: rate that has done its work (adaptive optimizers take large steps once
#: the gradients are tiny): a decay schedule settles them, a 10x lower rate
#: would not have fitted faster. Only a jump that gives back
#: `FITTED_GIVE_BACK` of the progress (a real blow-up) still counts.
FITTED_ACCURACY = 0.99
FITTED_LOSS = 0.02
FITTED_GIVE_BACK = 0.5
#: A jump of the training loss must give back at least this fraction of
#: the progress made before it (``L_e - best >= 0.1 (L_0 - best)``).
MATERIAL = 0.10
#: Jumps count against the rate only while they last: a run whose last
#: epoch is within this fraction of its best loss (or whose validation
#: accuracy ends within a point of its best) has settled.
SETTLED = 0.05
VAL_SETTLED = 0.01
#: Validation accuracy given back between epochs (sum of the drops of at
#: least `_DROP_MIN`), beyond which it is erratic or falling.
VAL_GIVE_BACK = 0.05
_DROP_MIN = 0.01
#: Validation accuracy ending this far below its best is a cost (the band
#: within which runs count as equally good): erratic or falling validation
#: accuracy (rule 5) and overfitting (rule 6) need it.
VAL_COST = 0.02
#: A run whose training loss moved less than this fraction of its first
#: epoch's value has barely moved.
BARELY = 0.10
#: Each epoch still gains at least this fraction of the first epoch's gain:
#: no diminishing returns yet.
STILL_STEEP = 0.5
#: The second epoch still gains this fraction of the first epoch's gain (the
#: first epoch's mean includes the fast initial drop of a well-set rate, so
#: it normally gains far more): the run is still in its initial transient.
EARLY_STEEP = 0.7
#: The first epoch's mean training loss over the validation loss after it:
#: beyond this the loss blew up during the first epoch. (With a healthy
#: rate, the epoch mean is between the initial loss and the loss at the end
#: of the epoch, and in practice under 2x the latter.)
BLOW_UP = 3.0
#: With accuracies, the loss ratio above must also exceed this multiple of
#: the first epoch's error rate over the validation error after it.
BLOW_UP_OVER_ERROR = 1.5
#: Without accuracies, the loss ratio above must exceed this multiple of the
#: training loss's fall after the first epoch, ``L[1] / L[-1]``.
BLOW_UP_OVER_LATER_FALL = 1.5
#: After the first epoch the training loss improved by less than this
#: fraction: the network has stopped learning.
STALLED = 0.01
#: A network that predicts the same distribution for every input scores
#: accuracy ``a = 1/C`` and loss ``L >= ln C`` on C balanced classes, so
#: ``a exp(L) <= 1``. A run whose training accuracy ends under
#: `DEAD_ACCURACY`, with ``a exp(L) < DEAD_CONSTANT`` (margin for unbalanced
#: classes), and rose less than `DEAD_RISE` since the first epoch predicts
#: no better than a constant.
DEAD_ACCURACY = 0.5
DEAD_CONSTANT = 1.5
DEAD_RISE = 0.02
#: ...unless its loss fell at every epoch from a first epoch under this
#: multiple of the last: a slow descent, not a network killed by an early
#: blow-up whose loss crawls back to a constant's.
DEAD_BLOW_UP = 1.5
#: ...and whose training accuracy rose at least this much: a dead network's
#: constant prediction scores the same every epoch.
DEAD_CRAWL_RISE = 0.005
#: A classifier's mean cross-entropy on its own training data, ``L``, and
#: its accuracy there, ``a``: a constant prediction over C classes scores
#: ``a exp(L) = 1`` (``a = 1/C``, ``L = ln C``), and learning lowers ``L``
#: faster than it raises ``a`` (well-fitted runs end near 1, slow ones
#: under 5). A run that ends under `DEAD_ACCURACY` with ``a exp(L)`` over
#: this is confidently wrong on the data it trains on: its logits blew up.
CONFIDENTLY_WRONG = 20.0
#: A loss "falls" (or rises) at an epoch when it moves by more than this
#: fraction of its value, two float32 rounding steps: a dead network's
#: epoch mean drifts by rounding (1e-7 of its value), while a steady
#: descent at a tiny rate (SGD at 1e-7) still moves it by 1e-6 an epoch.
FALL_TOLERANCE = 2.0 * float(np.finfo(np.float32).eps)
#: Training accuracy this far above validation accuracy, with the validation
#: loss still falling (so not overfitting), is a run whose inference-mode
#: model lags its training (BatchNorm's moving statistics lag weights that
#: still move a lot): it has not converged.
CATCHING_UP = 0.10
#: The last epoch's mean training loss above the validation loss after it,
#: by more than this fraction: the model improved markedly within the epoch
#: itself, i.e. it is underfitting, early in its descent. (Dropout and other
#: training-only noise raise the training loss too; the margin keeps their
#: usual effect out.)
UNDERFIT = 0.03
#: ...and the validation loss fell over the last epoch by at least this
#: fraction of that gap (relative to its last value).
UNDERFIT_EXPLAINED = 0.5
#: Validation loss this far above its minimum, with the training loss
#: still falling, is overfitting.
OVERFIT_RISE = 0.10
_TRAIN_STILL_FALLING = 0.05

#: Added to the readings of a dead network: weights turned NaN look the same
#: from the history on TensorFlow (a ReLU turns NaN into 0, the loss stays
#: finite at a constant prediction's).
_OR_NAN_WEIGHTS = (
    "; NaN weights behind a finite loss look the same (a NaN or Inf in the "
    "data: check `np.isfinite(x).all()`)"
)

_ACTIONS = {
    "too_high": "lower the learning rate about 10x (or add warmup and a decay "
    "schedule; `keras_lr.lr_range_test` finds the edge of stability)",
    "too_low": "raise the learning rate about 3-10x (`keras_lr.lr_range_test` "
    "shows how far it can go), or train for more epochs",
    "overfitting": "not a learning-rate problem: add regularisation (weight "
    "decay, dropout, augmentation), more data, or stop early at the best "
    "validation epoch",
    "good": "keep the rate; add a decay schedule (cosine or step) to gain the "
    "last points",
}


#: The readings of `diagnose`, by the verdict they give, in the order they
#: are tried (`Diagnosis.rule` names the one that decided).
RULES = {
    "diverged": "too_high",
    "one_epoch": "good",
    "blew_up": "too_high",
    "confidently_wrong": "too_high",
    "rising": "too_high",
    "oscillating": "too_high",
    "stopped_learning": "too_high",
    "erratic_validation": "too_high",
    "overfitting": "overfitting",
    "crawling": "too_low",
    "stalled": "too_high",
    "nothing_to_learn": "good",
    "barely_moving": "too_low",
    "constant_prediction": "too_high",
    "validation_catching_up": "too_low",
    "still_steep": "too_low",
    "slow_start": "too_low",
    "first_epoch_underfit": "too_low",
    "levelled_off": "good",
}


@dataclass(frozen=True)
class Diagnosis:
    """The verdict of `diagnose`, with its evidence and a recommended action.

    Attributes:
        verdict: ``"good"``, ``"too_high"``, ``"too_low"`` or
            ``"overfitting"``.
        evidence: the figures the verdict was drawn from.
        action: what to change.
        reasons: one sentence per finding; the last one gave the verdict,
            any before it are notes (a late jump, over-confidence).
        rule: the name of the reading that gave the verdict, one of `RULES`
            (empty when the diagnosis was not made by `diagnose`).

    Example:

    >>> d = Diagnosis("too_high", {"loss_jumps": 3}, "lower the rate about 10×")
    >>> print(d)
    Learning rate: too high.
    Recommended: lower the rate about 10×.
    """

    verdict: str
    evidence: dict[str, Any] = field(default_factory=dict)
    action: str = ""
    reasons: tuple[str, ...] = ()
    rule: str = ""

    def __str__(self) -> str:
        lines = [f"Learning rate: {self.verdict.replace('_', ' ')}."]
        lines += [f"- {r}" for r in self.reasons]
        lines.append(f"Recommended: {self.action}.")
        return "\n".join(lines)


def _as_dict(history: Any) -> dict[str, list[float]]:
    if hasattr(history, "history") and isinstance(history.history, dict):
        history = history.history
    if not isinstance(history, dict):
        raise TypeError(
            "Argument `history` must be a keras.callbacks.History or its "
            f"`history` dict. Received: history of type {type(history).__name__}"
        )
    return history


def _series(h: dict, key: str) -> np.ndarray | None:
    if key not in h:
        return None
    raw = h[key]
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
        raise TypeError(
            f"`history['{key}']` must be a sequence of numbers, one per epoch. "
            f"Received: {raw!r}"
        )
    try:
        values = np.asarray(list(raw), dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"`history['{key}']` must hold numbers, one per epoch. "
            f"Received: {list(raw)!r}"
        ) from None
    if values.ndim != 1:
        raise ValueError(
            f"`history['{key}']` must be one number per epoch (1-D). "
            f"Received: values of shape {values.shape}"
        )
    return values if values.size else None


def _accuracy_key(h: dict) -> tuple[str | None, list[str]]:
    """The accuracy to read, and the accuracies found when several are.

    One of `_ACC_KEYS`, else the one key ending in ``_accuracy`` or
    ``_acc`` (a multi-output model's ``out_accuracy``), with or without
    its ``val_`` twin; top-k accuracies are not accuracies of the
    prediction. Several such keys: none is read (which output's accuracy
    tells about the rate is not known), and they are returned.
    """
    for key in _ACC_KEYS:
        if key in h or f"val_{key}" in h:
            return key, []
    found = set()
    for key in h:
        if not isinstance(key, str):
            continue
        base = key[len("val_") :] if key.startswith("val_") else key
        if base.endswith(("_accuracy", "_acc")) and "top_k" not in base:
            found.add(base)
    if len(found) == 1:
        return found.pop(), []
    return None, sorted(found)


def _output_loss(h: dict, acc_key: str | None, loss: np.ndarray) -> np.ndarray:
    """The training loss of the output whose accuracy is read, else `loss`.

    A multi-output model logs ``out_accuracy`` and ``out_loss`` per output;
    its ``loss`` is the sum over outputs. The tests that weigh the loss
    against the accuracy (``a exp(L)``) take that output's own loss.

    >>> h = {"loss": [3.0], "digit_loss": [2.3], "digit_accuracy": [0.1]}
    >>> _output_loss(h, "digit_accuracy", np.array([3.0])).tolist()
    [2.3]
    """
    for suffix in ("_accuracy", "_acc"):
        if acc_key and acc_key.endswith(suffix) and acc_key != suffix[1:]:
            key = acc_key[: -len(suffix)] + "_loss"
            values = _series(h, key) if key in h else None
            if values is not None and values.size == loss.size:
                return values
    return loss


def _falling(values: np.ndarray) -> bool:
    """Whether every epoch lowered `values` by more than `FALL_TOLERANCE`."""
    drops = -np.diff(values)
    return bool(np.all(drops > FALL_TOLERANCE * np.abs(values[:-1])))


def _slow_descent(loss: np.ndarray, accuracy: np.ndarray) -> bool:
    """A loss that fell at every epoch from a first epoch not blown up
    (under `DEAD_BLOW_UP` times the last), with the accuracy rising by at
    least `DEAD_CRAWL_RISE`: a slow descent, not a network killed by an
    early blow-up whose loss crawls back to a constant's.

    >>> _slow_descent(np.array([5.4, 5.37, 5.34, 5.31]), np.array([0.11, 0.12, 0.13, 0.14]))
    True
    >>> _slow_descent(np.array([9.0, 3.0, 2.4, 2.3]), np.array([0.10, 0.11, 0.12, 0.13]))
    False
    """
    return (
        _falling(loss)
        and float(loss[0]) < DEAD_BLOW_UP * float(loss[-1])
        and float(accuracy[-1] - accuracy[0]) >= DEAD_CRAWL_RISE
    )


def _percent(fraction: float) -> str:
    """A fraction as a percentage, tiny ones with their first digits."""
    value = 100 * fraction
    return f"{value:.1f}%" if value == 0 or abs(value) >= 0.05 else f"{value:.1g}%"


def _stall_evidence(
    loss: np.ndarray,
    val_loss: np.ndarray | None,
    accuracy: np.ndarray | None,
    ce: np.ndarray,
) -> str | None:
    """What shows that a run that barely moved was stalled, not slow, or None.

    The training loss rose at an epoch (by more than `FALL_TOLERANCE`); or
    the validation loss ended above its first value, or the training
    accuracy fell, without the accuracy rising (no learning); or the
    training accuracy is a constant prediction's (see `DEAD_CONSTANT`) and
    has not risen.
    """
    rises = np.flatnonzero(np.diff(loss) > FALL_TOLERANCE * np.abs(loss[:-1]))
    if rises.size:
        return f"it went back up at epoch {int(rises[0]) + 2}"
    has_acc = accuracy is not None and bool(np.all(np.isfinite(accuracy[[0, -1]])))
    acc_change = float(accuracy[-1] - accuracy[0]) if has_acc else math.nan
    if has_acc and acc_change <= -DEAD_CRAWL_RISE:
        return "the training accuracy fell"
    if (
        val_loss is not None
        and val_loss.size >= 2
        and val_loss[-1] > val_loss[0]
        and not acc_change >= DEAD_CRAWL_RISE
    ):
        return "the validation loss rose"
    if (
        has_acc
        and accuracy[-1] < DEAD_ACCURACY
        and accuracy[-1] * math.exp(min(float(ce[-1]), 50.0)) < DEAD_CONSTANT
        and acc_change < DEAD_CRAWL_RISE
    ):
        return (
            f"the training accuracy ({100 * accuracy[-1]:.1f}%) is a constant "
            "prediction's"
        )
    return None


def _give_back(values: np.ndarray) -> float:
    """Sum of the drops between consecutive values that are >= `_DROP_MIN`."""
    drops = -np.diff(values)
    return float(drops[drops >= _DROP_MIN].sum())


def _validation_freqs(epochs: int, size: int, first: int = 0) -> dict[int, tuple]:
    """The ``validation_freq`` values k that validate `size` of `epochs` epochs.

    ``fit(validation_freq=k)`` validates after every epoch whose 0-based
    number ``e`` (counted from `initial_epoch`'s origin, as in
    ``History.epoch``) has ``(e + 1) % k == 0``. For a history whose first
    epoch is `first`, returns each such k with the 0-based positions in the
    history of the epochs it validates.
    """
    numbers = np.arange(first, first + epochs)
    found = {}
    for k in range(1, first + epochs + 1):
        at = np.flatnonzero((numbers + 1) % k == 0)
        if at.size == size:
            found[k] = tuple(int(i) for i in at)
    return found


def _first_epoch(history: Any, epochs: int) -> int:
    """The epoch number of a History's first entry (0 for a dict).

    ``fit(initial_epoch=n)`` numbers its epochs from n; ``History.epoch``
    keeps those numbers, which place its ``validation_freq`` validations.
    """
    seq = getattr(history, "epoch", None)
    if not isinstance(seq, list) or len(seq) != epochs or not seq:
        return 0
    if not all(isinstance(e, numbers.Integral) for e in seq):
        return 0
    if any(b - a != 1 for a, b in itertools.pairwise(seq)):
        return 0
    return max(int(seq[0]), 0)


def _validation_epochs(
    epochs: int, size: int, given: Any, first: int = 0
) -> np.ndarray:
    """0-based positions, in the history, of the `size` validation entries.

    Keras's ``fit(validation_freq=k)`` validates after epochs ``k, 2k, ...``
    (1-based, counted from the origin of ``initial_epoch``): a validation
    series shorter than the training series is read that way when the k
    consistent with it agree on where it was measured, unless `given`
    names the epochs.
    """
    if given is None:
        if size > epochs:
            raise ValueError(
                "The validation series of `history` are longer than its 'loss' "
                f"series. Received: {size} validation values for {epochs} epochs"
            )
        if size == epochs:
            # Validated every epoch (what every k that fits says): no search
            # over k, which costs O(epochs^2) on long histories.
            return np.arange(epochs, dtype=np.int64)
        found = _validation_freqs(epochs, size, first)
        places = set(found.values())
        if len(places) == 1:
            return np.asarray(places.pop(), dtype=np.int64)
        freqs = sorted(found)
        if not freqs:
            raise ValueError(
                f"The validation series of `history` ({size} values over "
                f"{epochs} epochs) do not come from a fixed `validation_freq` (with "
                f"{epochs} epochs, validation_freq=k validates {epochs} // k "
                "times): pass `validation_epochs=`, the 1-based epoch after "
                "which each validation value was measured."
            )
        options = sorted({tuple(i + 1 for i in found[k]) for k in freqs})
        options = [list(o) for o in options]
        raise ValueError(
            f"The validation series of `history` ({size} value{'s' * (size != 1)} "
            f"over {epochs} epochs) fit several `validation_freq` values "
            f"({', '.join(map(str, freqs))}): the values may have been measured "
            f"after epochs {' or '.join(map(str, options))}. Pass "
            "`validation_epochs=`, the 1-based epoch after which each "
            f"validation value was measured, e.g. validation_epochs={options[0]}."
        )
    if isinstance(given, np.ndarray):
        if given.ndim != 1:
            raise ValueError(
                "Argument `validation_epochs` must be 1-D. Received: "
                f"validation_epochs of shape {given.shape}"
            )
    elif isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise TypeError(
            "Argument `validation_epochs` must be a sequence of ints (the "
            "1-based epochs after which validation ran). Received: "
            f"validation_epochs of type {type(given).__name__}"
        )
    values = []
    for e in given:
        if isinstance(e, bool) or not isinstance(e, numbers.Integral):
            raise TypeError(
                "Argument `validation_epochs` must hold ints. Received: "
                f"validation_epochs={list(given)!r}"
            )
        values.append(int(e))
    at = np.asarray(values, dtype=np.int64)
    if (
        at.size != size
        or np.any(np.diff(at) <= 0)
        or (at.size and (at[0] < 1 or at[-1] > epochs))
    ):
        raise ValueError(
            "Argument `validation_epochs` must list, in increasing order, the "
            f"1-based epoch (1 to {epochs}) of each of the {size} validation "
            f"values. Received: validation_epochs={values}"
        )
    return at - 1


def _fitted(
    loss: np.ndarray, accuracy: np.ndarray | None, first_val_loss: float | None
) -> bool:
    """Whether the run fitted its training data (see `FITTED_ACCURACY`).

    Without an accuracy, a loss down to `FITTED_LOSS` of the first epoch's
    mean; not when that mean blew up (over `BLOW_UP` times the validation
    loss after it: it is then no measure of where training started), nor
    for a loss that is not positive (where ratios of losses change sign).
    """
    if accuracy is not None and np.any(np.isfinite(accuracy)):
        return bool(np.nanmax(accuracy) >= FITTED_ACCURACY)
    if first_val_loss is not None and loss[0] > BLOW_UP * abs(first_val_loss):
        return False
    if loss.min() <= 0.0:
        return False
    return bool(loss.min() <= FITTED_LOSS * loss[0])


def diagnose(
    history: Any, *, validation_epochs: Sequence[int] | np.ndarray | None = None
) -> Diagnosis:
    """Diagnoses the learning rate from a training history.

    The rules, in order (the first that applies gives the verdict):

    1. a non-finite training or validation loss: **too high**;
    2. the first epoch's mean training loss is over 3x the validation loss
       after it (it blew up on the way) and, with accuracies, over 1.5x the
       first epoch's error rate over the validation error after it (a fast
       healthy descent lowers both alike; a blow-up inflates the unbounded
       loss far more); without both a training and a validation accuracy
       (or with a first error rate that is not finite), over 1.5x the
       training loss's fall after the first epoch, ``L[1] / L[-1]`` (a fast
       descent goes on falling, to 0 for some losses; a blow-up stalls or
       crawls back; with a ``L[1]`` of 0 or below, the ratio alone decides):
       **too high**;
    2b. with accuracies, the run ends under 50% training accuracy ``a`` with
       ``a exp(L) > 20`` for its last training loss ``L`` (a constant
       prediction scores 1; confidently wrong predictions on its own
       training data, logits still blown up): **too high**;
    3. the training loss rose overall (``L_last > L_first``), or an epoch's
       mean came back more than 10% above the best before it (giving back
       at least 10% of the progress made) and the last epoch is still over
       5% above the best, unless validation accuracy held (ending within a
       point of its best, with drops between epochs under 5 points in
       total): **too high**;
    4. with 3 or more epochs, the training loss improved by less than 1%
       after the first epoch, not by a steady descent, while the first
       epoch gained over 10x the later epochs' mean change (the network
       stopped learning): **too high**;
    5. validation accuracy gave back 5 points or more in drops between
       epochs (erratic or falling) and ends 2 points or more below its
       best: **too high**;
    6. the validation loss rose 10% above its minimum while the training
       loss fell 5% more since that epoch, and validation accuracy (when
       logged) ends 2 points or more below its best: **overfitting** (a
       rising validation loss with the accuracy held is over-confidence,
       reported among the reasons);
    7. the training loss moved less than 10% of its first value: **too
       low** when it fell at every epoch while the validation loss fell over
       the run or the training accuracy rose half a point (a slow, steady
       descent), or when the validation loss (measured without dropout's
       noise) fell at every epoch; otherwise **too high** when the run
       shows a stall: the training loss went back up at an epoch, the
       validation loss ended above its first value or the training
       accuracy fell (and did not rise), or the training accuracy ends as
       a constant prediction's (``a exp(L) < 1.5``, see below) without
       rising (a network stalled where it started, whose loss may drift
       down by rounding); without such a sign, **good** for a loss of 0 at
       every epoch (nothing to learn) and **too low** for any other (a rate
       too small to move the weights). A fall or a rise counts when it is
       over two float32 rounding steps (about 2.4e-7) of the loss's value;
    7b. with a training accuracy logged, a run that ends under 50%
       accuracy, no more than 2 points above its second epoch (its first in
       a 2-epoch run: a first epoch that blew up has a depressed mean
       accuracy), with ``a exp(L) < 1.5`` (a constant prediction over C
       balanced classes scores ``a = 1/C`` with ``L >= ln C``) or a
       validation accuracy that never rose 2 points either, unless its
       loss fell at every epoch from a first epoch under 1.5x the last
       while its accuracy rose half a point or more (a slow descent):
       **too high** (it predicts no better than a constant: the
       rate killed it);
    7c. training accuracy ends more than 10 points above validation accuracy
       while the validation loss still falls (not overfitting: the
       inference-mode model, e.g. BatchNorm's moving statistics, has not
       caught up with training): **too low** (still converging);
    8. with 3 or more epochs, the last epoch's gain over the best before
       it is at least half the first's (``min(L[:-1]) - L[-1] >= 0.5 (L[0]
       - L[1])``; not the fall back from an epoch that blew up), or the second
       epoch's at least 0.7 of the first's (``L[1] - L[2] >= 0.7 (L[0] -
       L[1])``: with a well-set rate the first epoch's mean already holds
       the fast initial drop): **too low**;
    9. the last epoch's mean training loss is more than 3% above the
       validation loss after it (the classic sign of underfitting: the
       model still improved markedly within that epoch), and the validation
       loss fell over the last epoch by at least half that gap (an even
       descent through the epoch would show a fall of twice the gap; heavy
       dropout opens a gap with no fall): **too low**;
    10. otherwise **good**.

    Without an accuracy in the history (a regression, a classifier
    compiled with no metric) rule 2 weighs the later fall of the loss
    instead of the error rate: a descent so fast that the first epoch's
    mean is over 3x the validation loss after it still reads as a blow-up
    while the later fall ``L[1] / L[-1]`` is under that ratio over 1.5.
    That fall grows with the epochs, so a fast descent may read as a
    blow-up after 3 epochs and as healthy after 5: the reading firms up as
    the run goes on. A run that converges in its first epoch and then holds
    its level reads as stalled by rule 4, and a rising validation loss
    reads as overfitting (rule 6) with no validation accuracy to show that
    the predictions held. Log an accuracy where there is one: on the
    1,008 runs of the diagnosis benchmark, `diagnose` agrees with the
    grids' labels on 84.7% of them with the accuracies and on 77.6%
    without.

    A run that fitted its training data (training accuracy 99% or more, or
    without an accuracy a positive training loss down to 2% of the first
    epoch's, when that epoch did not blow up) was not held back by its
    rate: rules 2, 4, 5 and 7c do not apply to it (a plateau at a fitted
    loss is convergence, and a gap between training and validation
    accuracy is one of generalisation), and rule 3 counts only jumps that
    give back half the progress. Its later
    jumps are reported among the reasons of a ``good`` verdict (a decay
    schedule settles them).

    A validation series shorter than the training series (``fit`` with
    ``validation_freq=k``) is read as measured after epochs ``k, 2k, ...``
    when a single ``k`` fits it (``epochs // k`` validations); when several
    do (one value over 5 epochs may come from k = 3, 4 or 5), pass
    `validation_epochs` (`keras_lr.callbacks.LRMonitor` records them). The
    rules that compare training and validation figures take the training
    figures of those epochs.

    Args:
        history: a `keras.callbacks.History` or its ``history`` dict, with
            at least ``"loss"``; ``"val_loss"`` and an accuracy
            (``"accuracy"``/``"val_accuracy"`` or similar; without those,
            the one accuracy whose key ends in ``_accuracy`` or ``_acc``,
            such as a multi-output model's ``"out_accuracy"``) are used when
            present. A None value reads as NaN (not finite).
        validation_epochs: the 1-based epochs after which the validation
            values were measured, one per value (a sequence or 1-D array of
            ints); default: every epoch, or every ``k``-th epoch for a
            shorter validation series that only one ``k`` fits.

    Returns:
        A `Diagnosis`.

    Raises:
        TypeError: if `history` is neither a History nor a dict, or
            `validation_epochs` is not a sequence of ints.
        ValueError: if it has no ``"loss"`` values, its validation series
            are longer than it or of different lengths, their epochs are
            ambiguous and `validation_epochs` is not given, or
            `validation_epochs` does not match them (or is given for a
            history without validation values).

    Example:

    >>> d = diagnose({"loss": [2.0, 1.0, 0.7, 0.6, 0.55]})
    >>> d.verdict
    'good'
    >>> diagnose({"loss": [2.3, 2.25, 2.2, 2.15, 2.1]}).verdict
    'too_low'
    >>> diagnose({"loss": [1.0, 0.6, float("nan")]}).verdict
    'too_high'
    """
    h = _as_dict(history)
    loss = _series(h, "loss")
    if loss is None:
        raise ValueError(
            "Argument `history` must have a non-empty 'loss' series. "
            f"Received keys: {sorted(map(str, h))}"
        )
    val_loss = _series(h, "val_loss")
    acc_key, accuracies = _accuracy_key(h)
    acc = _series(h, acc_key) if acc_key else None
    # The loss that goes with the accuracy read (a multi-output model's).
    ce = _output_loss(h, acc_key, loss)
    val_acc = _series(h, f"val_{acc_key}") if acc_key else None
    epochs = int(loss.size)
    sizes = {v.size for v in (val_loss, val_acc) if v is not None}
    if len(sizes) > 1:
        raise ValueError(
            "The validation series of `history` must have the same length. "
            f"Received: val_loss of {val_loss.size} and val_{acc_key} of "
            f"{val_acc.size} values"
        )
    if acc is not None and acc.size != epochs:
        raise ValueError(
            f"The '{acc_key}' series of `history` must have one value per epoch. "
            f"Received: {acc.size} values for {epochs} epochs"
        )
    if sizes:
        val_at = _validation_epochs(
            epochs, sizes.pop(), validation_epochs, _first_epoch(history, epochs)
        )
    elif validation_epochs is not None:
        raise ValueError(
            "Argument `validation_epochs` was given but `history` has no "
            "validation values ('val_loss' or a validation accuracy). "
            f"Received: validation_epochs={validation_epochs!r}, history keys: "
            f"{sorted(h)}"
        )
    else:
        val_at = None
    # Training figures of the epochs that were validated.
    loss_v = loss[val_at] if val_at is not None else None
    acc_v = acc[val_at] if acc is not None and val_at is not None else None
    ev: dict[str, Any] = {
        "epochs": epochs,
        "loss_first": float(loss[0]),
        "loss_last": float(loss[-1]),
    }
    if val_loss is not None:
        ev["val_loss_last"] = float(val_loss[-1])
    if val_acc is not None:
        ev["val_accuracy_last"] = float(val_acc[-1])
    if val_at is not None and val_at.size != epochs:
        ev["validation_epochs"] = [int(e) + 1 for e in val_at]
    reasons: list[str] = []
    if accuracies:
        ev["accuracies_not_read"] = accuracies
        reasons.append(
            f"several accuracies ({', '.join(accuracies)}) and no plain "
            "'accuracy': none of them was read"
        )

    def verdict(name: str, rule: str) -> Diagnosis:
        return Diagnosis(name, ev, _ACTIONS[name], tuple(reasons), rule)

    # 1. Divergence.
    for key, series in (("loss", loss), ("val_loss", val_loss)):
        if series is not None and not np.all(np.isfinite(series)):
            first = int(np.flatnonzero(~np.isfinite(series))[0])
            if key == "val_loss":
                first = int(val_at[first])  # the epoch it was measured after
            ev[f"{key}_nonfinite_epoch"] = first + 1
            if np.isfinite(series[-1]):
                reasons.append(
                    f"{key} is not finite at epoch {first + 1}: it diverged "
                    "(finite again by the last epoch: something, a rollback or a "
                    "restart, brought it back)"
                )
            else:
                reasons.append(
                    f"{key} is not finite from epoch {first + 1}: it diverged"
                )
            return verdict("too_high", "diverged")

    if epochs == 1:
        reasons.append(
            "one epoch only: no trend to read; the loss stayed finite "
            "(train for a few epochs to judge the rate)"
        )
        return verdict("good", "one_epoch")

    # A run that fitted its training data was not crippled by its rate:
    # rules 2, 3 (small jumps) and 5 do not hold it against the rate.
    first_val_loss = (
        float(val_loss[0]) if val_loss is not None and val_at[0] == 0 else None
    )
    fitted = _fitted(loss, acc, first_val_loss)
    ev["fitted_training_data"] = fitted

    # 2. Blown up in the first epoch, then stalled or crawling back.
    # (It needs the validation after the first epoch.)
    if val_loss is not None and val_at[0] == 0 and not fitted:
        blow_up = loss[0] / max(abs(val_loss[0]), 1e-12)
        ev["first_epoch_blow_up"] = float(blow_up)
        # A fast descent also puts the epoch's mean far above the loss at
        # its end; the error rate, bounded, then falls about as much. A
        # blow-up inflates the (unbounded) loss far more than the error.
        healthy = math.nan
        if acc is not None and val_acc is not None:
            error_fall = (1.0 - acc[0]) / max(1.0 - val_acc[0], 1e-3)
            ev["first_epoch_error_fall"] = float(error_fall)
            healthy = BLOW_UP_OVER_ERROR * error_fall
        if not math.isfinite(healthy) and loss[1] > 0:
            # No error rate to weigh: a fast descent goes on falling after
            # its first epoch (to 0, for some losses), where a blow-up
            # stalls or crawls back.
            later_fall = float(loss[1] / loss[-1]) if loss[-1] > 0 else math.inf
            ev["later_fall"] = later_fall
            healthy = BLOW_UP_OVER_LATER_FALL * later_fall
        if blow_up > BLOW_UP and not blow_up <= healthy:
            reasons.append(
                f"the first epoch's mean training loss ({loss[0]:.4g}) is "
                f"{blow_up:.1f}x the validation loss after it: the loss blew up "
                "early in training"
            )
            return verdict("too_high", "blew_up")

    # 2b. Confidently wrong on its own training data (a blow-up it has not
    # recovered from: the ratio of rule 2 misses one that lasts past the
    # first epoch). Not for a slow descent (the loss falling at every epoch
    # from a first epoch not blown up, the accuracy rising): a loss that
    # holds more than the accuracy's cross-entropy (a weight penalty's
    # share, which this test cannot see) also lifts ``a exp(L)``.
    if acc is not None and np.isfinite(acc[-1]) and 0.0 < acc[-1] < DEAD_ACCURACY:
        log_wrong = float(ce[-1]) + math.log(float(acc[-1]))
        ev["log_accuracy_times_exp_loss"] = log_wrong
        if log_wrong > math.log(CONFIDENTLY_WRONG) and not _slow_descent(ce, acc):
            reasons.append(
                f"the last epoch's training loss ({ce[-1]:.4g}) is far above "
                f"what a constant prediction scores at its training accuracy "
                f"({100 * acc[-1]:.1f}%): confidently wrong predictions, logits "
                "blown up by too high a rate"
            )
            return verdict("too_high", "confidently_wrong")

    # 3. Training loss rising or jumping back up.
    running_best = np.minimum.accumulate(loss)[:-1]
    rebound = (loss[1:] - running_best) / np.maximum(np.abs(running_best), 1e-12)
    # Near a zero loss a few hard examples make large relative jumps: a jump
    # counts only if it gives back a material part of the progress so far.
    progress = np.maximum(loss[0] - running_best, 1e-12)
    given_back = (loss[1:] - running_best) / progress
    rebound = np.where(given_back >= MATERIAL, rebound, 0.0)
    late_jump = fitted and bool(rebound.max() > REBOUND)
    if fitted:
        rebound = np.where(given_back >= FITTED_GIVE_BACK, rebound, 0.0)
    ev["max_rebound"] = float(rebound.max())
    if loss[-1] > loss[0]:
        reasons.append(
            f"the training loss rose from {loss[0]:.4g} to {loss[-1]:.4g} over the run"
        )
        return verdict("too_high", "rising")
    best = float(loss.min())
    # Relative to |best|: a loss may be negative (cosine similarity, a
    # Gaussian log-likelihood), where ratios of losses change sign.
    over_best = (float(loss[-1]) - best) / max(abs(best), 1e-12)
    ev["last_over_best"] = over_best
    # ...unless validation accuracy held: steady (not erratic by rule 5's
    # measure) and ending within a point of its best.
    val_settled = (
        val_acc is not None
        and val_acc.size >= 2
        and float(val_acc.max() - val_acc[-1]) < VAL_SETTLED
        and _give_back(val_acc) < VAL_GIVE_BACK
    )
    if rebound.max() > REBOUND and over_best > SETTLED and not val_settled:
        e = int(np.argmax(rebound)) + 2
        reasons.append(
            f"the training loss jumped back up {100 * rebound.max():.0f}% above "
            f"its best at epoch {e}: it oscillates"
        )
        return verdict("too_high", "oscillating")

    # 4. Stopped learning after the first epoch (a killed network): the
    # later epochs gain nothing, and not by a steady crawl.
    if epochs >= 3:
        later = loss[1:]
        late_gain = (later[0] - later[-1]) / max(abs(later[0]), 1e-12)
        first_gain = loss[0] - loss[1]
        late_steps = np.abs(np.diff(later))
        ev["late_relative_decrease"] = float(late_gain)
        steady = bool(np.all(np.diff(later) < 0))
        if (
            late_gain < STALLED
            and not steady
            and first_gain > 10 * float(late_steps.mean())
            and not fitted
        ):
            reasons.append(
                f"after the first epoch the training loss improved only "
                f"{100 * late_gain:.2f}%, and not steadily: the network stopped "
                "learning (a rate so high that it killed it)" + _OR_NAN_WEIGHTS
            )
            return verdict("too_high", "stopped_learning")

    # 5. Validation accuracy erratic or falling.
    if val_acc is not None and val_acc.size >= 2:
        give_back = _give_back(val_acc)
        ev["val_accuracy_give_back"] = give_back
        below_best = float(val_acc.max() - val_acc[-1])
        ev["val_accuracy_below_best"] = below_best
        if give_back >= VAL_GIVE_BACK and below_best >= VAL_COST and not fitted:
            reasons.append(
                f"validation accuracy dropped by {100 * give_back:.1f} points in "
                "total between epochs: it is erratic or falling"
            )
            return verdict("too_high", "erratic_validation")

    # 6. Overfitting.
    if val_loss is not None and val_loss.size >= 3:
        k = int(np.argmin(val_loss))
        rise = (val_loss[-1] - val_loss[k]) / max(abs(val_loss[k]), 1e-12)
        train_fall = (loss_v[k] - loss[-1]) / max(abs(loss_v[k]), 1e-12)
        ev["val_loss_rise"] = float(rise)
        ev["val_loss_best_epoch"] = int(val_at[k]) + 1
        acc_held = val_acc is not None and val_acc.max() - val_acc[-1] < VAL_COST
        rising = (
            k < val_loss.size - 1
            and rise > OVERFIT_RISE
            and train_fall > _TRAIN_STILL_FALLING
        )
        if rising and acc_held:
            reasons.append(
                f"validation loss rose {100 * rise:.0f}% from its minimum at epoch "
                f"{int(val_at[k]) + 1} while validation accuracy held within "
                f"{100 * VAL_COST:.0f} points of its best: the predictions grow "
                "over-confident (watch it; stop early on val_accuracy)"
            )
        if rising and not acc_held:
            reasons.append(
                f"validation loss rose {100 * rise:.0f}% from its minimum at epoch "
                f"{int(val_at[k]) + 1} while the training loss fell another "
                f"{100 * train_fall:.0f}%"
            )
            return verdict("overfitting", "overfitting")

    # 7. Barely moving.
    moved = (loss[0] - loss[-1]) / max(abs(loss[0]), 1e-12)
    monotone = _falling(loss)
    ev["relative_decrease"] = float(moved)
    ev["monotone"] = monotone
    # With dropout the training loss jitters; the validation loss, measured
    # with dropout off, shows a steady crawl.
    val_monotone = val_loss is not None and _falling(val_loss)
    ev["val_loss_monotone"] = val_monotone
    # A crawl is learning: the validation loss, when measured, falls with
    # the training loss, or the training accuracy rises. A dead network's
    # training loss may drift down by rounding at every epoch while neither
    # happens.
    learning = (
        val_loss is None
        or val_loss.size < 2
        or val_loss[-1] < val_loss[0]
        or (acc is not None and acc[-1] - acc[0] >= DEAD_CRAWL_RISE)
    )
    if moved < BARELY:
        if (monotone and learning) or (val_monotone and val_loss.size >= 3):
            steady = "steadily" if monotone else "the validation loss steadily"
            reasons.append(
                f"the training loss fell only {_percent(moved)} over "
                f"{epochs} epochs, {steady}: it is crawling"
            )
            return verdict("too_low", "crawling")
        # A network that a too-high rate stalled shows it: its loss goes up
        # and down, it does not learn on validation data, or its accuracy
        # is a constant prediction's. A loss that did not move at all, with
        # none of these, is a rate too small to move the weights.
        stall = _stall_evidence(loss, val_loss, acc, ce)
        if stall is not None:
            reasons.append(
                f"the training loss moved only {_percent(moved)} and not "
                f"steadily, and {stall}: the network stalled where it started"
                + _OR_NAN_WEIGHTS
            )
            return verdict("too_high", "stalled")
        if not np.any(loss):
            reasons.append(
                "the training loss is 0 at every epoch: there is nothing left "
                "to learn, at any rate"
            )
            return verdict("good", "nothing_to_learn")
        reasons.append(
            f"the training loss moved only {_percent(moved)} over {epochs} "
            "epochs, without going back up: the rate is too small to move the "
            "weights (a network that cannot learn at all, with vanishing "
            "gradients, looks the same: `keras_lr.lr_range_test` shows "
            "whether a higher rate lowers the loss)"
        )
        return verdict("too_low", "barely_moving")

    # 7b. Predicting no better than a constant, after a blow-up.
    if acc is not None and np.all(np.isfinite(acc[[0, -1]])):
        constant = float(acc[-1] * math.exp(min(ce[-1], 50.0)))
        ev["accuracy_times_exp_loss"] = constant
        # Chance level: a constant's score, or (confidently wrong, with a
        # large loss) a validation accuracy that never rose either.
        flat_val = val_acc is not None and float(val_acc.max() - val_acc[0]) < DEAD_RISE
        # A loss that fell at every epoch from a first epoch not blown up
        # (under DEAD_BLOW_UP times the last) is a slow descent, not a
        # network killed early and crawling back to a constant's loss.
        crawling = _slow_descent(loss, acc)
        if (
            acc[-1] < DEAD_ACCURACY
            and acc[-1] - acc[min(1, epochs - 2)] < DEAD_RISE
            and (constant < DEAD_CONSTANT or flat_val)
            and not crawling
        ):
            val_text = ", nor has validation accuracy" if flat_val else ""
            reasons.append(
                f"training accuracy ends at {100 * acc[-1]:.1f}% (loss "
                f"{loss[-1]:.3g}) and has not risen{val_text}: the network "
                "predicts no better than a constant (a rate so high that it "
                "killed it)" + _OR_NAN_WEIGHTS
            )
            return verdict("too_high", "constant_prediction")

    # 7c. Evaluation still catching up with training.
    if acc_v is not None and val_acc is not None and val_loss is not None:
        lag = float(acc_v[-1] - val_acc[-1])
        ev["train_over_val_accuracy"] = lag
        # Not once the training data is fitted: the gap is then one of
        # generalisation, which no rate closes.
        if (
            lag > CATCHING_UP
            and val_loss.size >= 2
            and val_loss[-1] < val_loss[-2]
            and not fitted
        ):
            reasons.append(
                f"validation accuracy ({100 * val_acc[-1]:.1f}%) is still "
                f"{100 * lag:.0f} points below training accuracy while the "
                "validation loss falls: the model in inference mode has not "
                "caught up with training (BatchNorm statistics lag a slow run): "
                "it is still converging"
            )
            return verdict("too_low", "validation_catching_up")

    # 8. No diminishing returns yet.
    if epochs >= 3:
        first_gain = loss[0] - loss[1]
        # Against the best before it: not the fall back from an epoch that
        # blew up (and was rolled back by a DivergenceDetector).
        last_gain = float(loss[:-1].min()) - loss[-1]
        steep = last_gain / first_gain if first_gain > 0 else math.nan
        ev["last_to_first_gain"] = float(steep)
        if steep >= STILL_STEEP:  # False for NaN
            reasons.append(
                f"the last epoch still gained {100 * min(steep, 9.99):.0f}% of what "
                "the first gained: the loss is far from levelling off"
            )
            return verdict("too_low", "still_steep")
        early = (loss[1] - loss[2]) / first_gain if first_gain > 0 else math.nan
        ev["second_to_first_gain"] = float(early)
        if early >= EARLY_STEEP:  # False for NaN
            reasons.append(
                f"the second epoch gained {100 * min(early, 9.99):.0f}% of what the "
                "first gained: the loss did not drop fast at first and then level "
                "off, it is still in its slow initial descent"
            )
            return verdict("too_low", "slow_start")

    # 9. Still descending within the last epoch (underfitting).
    if val_loss is not None:
        gap = (loss_v[-1] - val_loss[-1]) / max(abs(val_loss[-1]), 1e-12)
        ev["train_over_val"] = float(gap)
        # Improving within the epoch, the model also improved across it: the
        # validation loss fell over the last epoch. A descent at an even
        # pace through the epoch puts the epoch's mean half of that fall
        # above its end (gap ~ fall / 2); a gap that a fall of half its size
        # does not account for is training-only noise (heavy dropout).
        val_fall = (
            (val_loss[-2] - val_loss[-1]) / max(abs(val_loss[-1]), 1e-12)
            if val_loss.size >= 2
            else math.inf
        )
        ev["val_loss_last_fall"] = float(val_fall)
        if gap > UNDERFIT and val_fall >= UNDERFIT_EXPLAINED * gap:
            reasons.append(
                f"the last epoch's mean training loss is {100 * gap:.1f}% above the "
                "validation loss after it: the model still improved markedly "
                "within that epoch, early in its descent (underfitting)"
            )
            return verdict("too_low", "first_epoch_underfit")

    if late_jump:
        reasons.append(
            "the training loss jumped back up after the model had fitted its "
            "training data: late instability that a decay schedule settles"
        )
    else:
        reasons.append("the loss fell and levelled off without jumps")
    return verdict("good", "levelled_off")
