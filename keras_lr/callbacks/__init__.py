"""Callbacks for `model.fit`: range test, schedulers, divergence guard, monitor."""

from keras_lr.callbacks.divergence import DivergenceDetector, DivergenceError
from keras_lr.callbacks.lr_monitor import LRMonitor
from keras_lr.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from keras_lr.callbacks.schedulers import (
    CyclicLRScheduler,
    LearningRateLogger,
    OneCycleScheduler,
    WarmupScheduler,
)
from keras_lr.range_test.callback import LRRangeTest

__all__ = [
    "CyclicLRScheduler",
    "DivergenceDetector",
    "DivergenceError",
    "LRMonitor",
    "LRRangeTest",
    "LearningRateLogger",
    "OneCycleScheduler",
    "ReduceLROnPlateau",
    "WarmupScheduler",
]
