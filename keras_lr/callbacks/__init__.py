"""Callbacks for `model.fit`."""

from keras_lr.range_test.callback import LRRangeTest

__all__ = ["LRRangeTest"]
