"""Callbacks for `model.fit`."""

from keras_lr.range_test.callback import LRRangeTest

__all__ = ["LRRangeTest"]

from keras_lr.callbacks.divergence import (
    DivergenceDetector,
    DivergenceError,
)

__all__ += ["DivergenceDetector", "DivergenceError"]

from keras_lr.callbacks.lr_monitor import LRMonitor  # noqa: E402

__all__ += ["LRMonitor"]
