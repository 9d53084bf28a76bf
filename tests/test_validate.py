import numpy as np
import pytest

from keras_lr import _validate


@pytest.mark.parametrize("bad", ["0.01", 1, True, None, b"1", [0.1]])
def test_learning_rate_must_be_float(bad):
    with pytest.raises(TypeError, match="must be a float"):
        _validate.check_learning_rate("lr", bad)


def test_learning_rate_int_message_suggests_float():
    with pytest.raises(
        TypeError, match=r"such as 1\.0\. Received: lr=1 \(of type int\)"
    ):
        _validate.check_learning_rate("lr", 1)


@pytest.mark.parametrize("good", [0.1, np.float32(0.5), np.float64(2.0)])
def test_learning_rate_accepts_floats(good):
    assert _validate.check_learning_rate("lr", good) == float(good)


def test_greater_message_names_both():
    with pytest.raises(ValueError) as info:
        _validate.check_greater("end_lr", 0.1, "start_lr", 1.0)
    assert str(info.value) == (
        "Argument `end_lr` must be > `start_lr`. Received: start_lr=1.0, end_lr=0.1"
    )


def test_interval_and_choice_and_int():
    assert _validate.check_in_interval("s", 0.0, 0.0, 1.0) == 0.0
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\)"):
        _validate.check_in_interval("s", -0.1, 0.0, 1.0)
    with pytest.raises(ValueError, match="must be one of"):
        _validate.check_choice("mode", "x", ("a", "b"))
    with pytest.raises(TypeError, match="integer"):
        _validate.check_int("n", 1.5)
    with pytest.raises(TypeError, match="integer"):
        _validate.check_int("n", True)


def test_check_smoothing():
    assert _validate.check_smoothing("smoothing", 0) == 0.0
    assert _validate.check_smoothing("beta", np.float32(0.5)) == 0.5
    for bad in (1.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"`beta` must be in \[0.0, 1.0\)"):
            _validate.check_smoothing("beta", bad)
    for bad in ("0.9", None, True):
        with pytest.raises(TypeError, match="`beta` must be a number"):
            _validate.check_smoothing("beta", bad)
