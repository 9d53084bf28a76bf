"""Argument checks with Keras-style messages.

Every public entry point of keras_lr validates its arguments here, so that a
bad value fails early, names the argument and shows what was received::

    ValueError: Argument `end_lr` must be > `start_lr`. Received: start_lr=1.0,
    end_lr=0.1

This module imports nothing from keras: it is pure Python and numpy-free.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


def _is_bool(value: Any) -> bool:
    # numpy's bool is `numpy.bool_` (`numpy.bool` from numpy 2).
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")


def check_bool(name: str, value: Any) -> bool:
    """Checks that a flag is a bool (Python's or numpy's).

    A string such as ``"no"`` would otherwise read as True.

    Example:

    >>> check_bool("restore", False)
    False
    >>> check_bool("restore", "no")
    Traceback (most recent call last):
    ...
    TypeError: Argument `restore` must be a bool. Received: restore='no' (of type str)
    """
    if not _is_bool(value):
        raise TypeError(
            f"Argument `{name}` must be a bool. Received: {name}={value!r} "
            f"(of type {type(value).__name__})"
        )
    return bool(value)


def check_learning_rate(name: str, value: Any) -> float:
    """Checks that a learning rate is a float and returns it as `float`.

    A learning rate given as a string (``"0.01"``) or an int (``1``) is
    refused with a `TypeError` that says to pass a float: an int rate is
    nearly always a typo (``1`` for ``1e-1``), and a string one comes from an
    unparsed config.

    Args:
        name: the argument's name, for the message.
        value: the value received.

    Returns:
        The value as a Python float.

    Raises:
        TypeError: if `value` is not a real floating-point number.

    Example:

    >>> check_learning_rate("max_lr", 0.1)
    0.1
    >>> check_learning_rate("max_lr", "0.1")
    Traceback (most recent call last):
    ...
    TypeError: Argument `max_lr` must be a float, such as 0.1. Received: max_lr='0.1' (of type str)
    """
    if _is_bool(value) or isinstance(value, (str, bytes)):
        raise TypeError(_float_message(name, value))
    if isinstance(value, numbers.Integral):
        raise TypeError(_float_message(name, value))
    if not isinstance(value, numbers.Real):
        raise TypeError(_float_message(name, value))
    return float(value)


def _float_message(name: str, value: Any) -> str:
    example = "0.1"
    if isinstance(value, numbers.Integral) and not _is_bool(value):
        example = f"{float(value)!r}"
    return (
        f"Argument `{name}` must be a float, such as {example}. "
        f"Received: {name}={value!r} (of type {type(value).__name__})"
    )


def check_real(name: str, value: Any) -> float:
    """Checks that `value` is a real number (int or float) and returns a float.

    Example:

    >>> check_real("gamma", 1)
    1.0
    """
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a number. "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    return float(value)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Checks that `value` is an integer, at least `minimum` when given.

    Example:

    >>> check_int("num_steps", 100, minimum=10)
    100
    >>> check_int("num_steps", 5, minimum=10)
    Traceback (most recent call last):
    ...
    ValueError: Argument `num_steps` must be >= 10. Received: num_steps=5
    """
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `{name}` must be an integer. "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(
            f"Argument `{name}` must be >= {minimum}. Received: {name}={value}"
        )
    return value


def check_positive(name: str, value: float) -> float:
    """Checks `value > 0`.

    Example:

    >>> check_positive("start_lr", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: Argument `start_lr` must be > 0. Received: start_lr=0.0
    """
    if not value > 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    return value


def check_non_negative(name: str, value: float) -> float:
    """Checks `value >= 0`."""
    if not value >= 0:
        raise ValueError(f"Argument `{name}` must be >= 0. Received: {name}={value}")
    return value


def check_greater(
    name: str, value: float, other_name: str, other: float, *, strict: bool = True
) -> None:
    """Checks `value > other` (or `>=` when `strict=False`).

    Example:

    >>> check_greater("end_lr", 0.1, "start_lr", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: Argument `end_lr` must be > `start_lr`. Received: start_lr=1.0, end_lr=0.1
    """
    ok = value > other if strict else value >= other
    if not ok:
        op = ">" if strict else ">="
        raise ValueError(
            f"Argument `{name}` must be {op} `{other_name}`. "
            f"Received: {other_name}={other}, {name}={value}"
        )


def check_in_interval(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    low_closed: bool = True,
    high_closed: bool = False,
) -> float:
    """Checks that `value` lies in an interval such as ``[0, 1)``.

    Example:

    >>> check_in_interval("smoothing", 1.0, 0.0, 1.0)
    Traceback (most recent call last):
    ...
    ValueError: Argument `smoothing` must be in [0.0, 1.0). Received: smoothing=1.0
    """
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    if not (above and below):
        left = "[" if low_closed else "("
        right = "]" if high_closed else ")"
        raise ValueError(
            f"Argument `{name}` must be in {left}{low}, {high}{right}. "
            f"Received: {name}={value}"
        )
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Checks that `value` is one of `choices`.

    Example:

    >>> check_choice("mode", "cubic", ("exponential", "linear"))
    Traceback (most recent call last):
    ...
    ValueError: Argument `mode` must be one of ('exponential', 'linear'). Received: mode='cubic'
    """
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {choices}. Received: {name}={value!r}"
        )
    return value


def check_finite(name: str, value: float) -> float:
    """Checks that `value` is finite (neither infinite nor NaN).

    Example:

    >>> check_finite("end_lr", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: Argument `end_lr` must be finite. Received: end_lr=inf
    """
    if not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be finite. Received: {name}={value}")
    return value


def check_at_least(name: str, value: float, minimum: float) -> float:
    """Checks `value >= minimum`, for a constant bound.

    Example:

    >>> check_at_least("div_factor", 0.5, 1.0)
    Traceback (most recent call last):
    ...
    ValueError: Argument `div_factor` must be >= 1. Received: div_factor=0.5
    """
    if not value >= minimum:
        raise ValueError(
            f"Argument `{name}` must be >= {minimum:g}. Received: {name}={value}"
        )
    return value


def check_optional_int(name: str, value: Any, *, minimum: int) -> int | None:
    """Checks that `value` is None or an integer >= `minimum`.

    Example:

    >>> check_optional_int("batch_size", None, minimum=1) is None
    True
    >>> check_optional_int("batch_size", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: Argument `batch_size` must be >= 1. Received: batch_size=0
    """
    if value is None:
        return None
    return check_int(name, value, minimum=minimum)


def check_verbose(value: Any) -> int:
    """Checks a Keras-style `verbose`: a bool, or an integer >= 0.

    Example:

    >>> check_verbose(True), check_verbose(2)
    (1, 2)
    >>> check_verbose(0.5)
    Traceback (most recent call last):
    ...
    TypeError: Argument `verbose` must be an integer. Received: verbose=0.5 (of type float)
    """
    if _is_bool(value):
        return int(value)
    return check_int("verbose", value, minimum=0)


def check_smoothing(name: str, value: Any) -> float:
    """Checks an exponential-smoothing factor: a real number in ``[0, 1)``.

    ``1`` would never move away from the start (a bias-corrected EMA then
    divides zero by zero), and NaN, negative or larger values are not
    smoothing factors.

    Example:

    >>> check_smoothing("smoothing", 0.98)
    0.98
    >>> check_smoothing("smoothing", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: Argument `smoothing` must be in [0.0, 1.0). Received: smoothing=1.0
    >>> check_smoothing("smoothing", "0.9")
    Traceback (most recent call last):
    ...
    TypeError: Argument `smoothing` must be a number. Received: smoothing='0.9' (of type str)
    """
    return check_in_interval(name, check_real(name, value), 0.0, 1.0)
