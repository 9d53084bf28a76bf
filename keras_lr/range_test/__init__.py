"""The LR range test: callback, one-call API and result."""

from keras_lr.range_test.api import LRSearch, find_best_learning_rate, lr_range_test
from keras_lr.range_test.callback import LRRangeTest
from keras_lr.range_test.result import LRRangeTestResult, RangeTestWarning

__all__ = [
    "LRRangeTest",
    "LRRangeTestResult",
    "LRSearch",
    "RangeTestWarning",
    "find_best_learning_rate",
    "lr_range_test",
]
