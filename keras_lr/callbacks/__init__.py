"""Callbacks for `model.fit`."""

from keras_lr.range_test.callback import LRRangeTest

__all__ = ["LRRangeTest"]

# Learning-rate schedules (issue 6).
from keras_lr.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from keras_lr.callbacks.schedulers import (
    CyclicLRScheduler,
    LearningRateLogger,
    OneCycleScheduler,
    WarmupScheduler,
)

__all__ += [
    "CyclicLRScheduler",
    "LearningRateLogger",
    "OneCycleScheduler",
    "ReduceLROnPlateau",
    "WarmupScheduler",
]
