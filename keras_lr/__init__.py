"""keras-lr: find a good learning rate for a Keras model, and keep training healthy.

>>> import keras_lr
>>> sorted(keras_lr.suggest.RULES)
['default', 'minimum', 'steep', 'steepest', 'valley']
"""

from keras_lr import callbacks, data, optimizers, schedules, suggest
from keras_lr.diagnose import Diagnosis, diagnose
from keras_lr.plot import plot_range_test, plot_schedule
from keras_lr.range_test import (
    LRRangeTestResult,
    LRSearch,
    RangeTestWarning,
    find_best_learning_rate,
    lr_range_test,
)

__version__ = "0.1.0"

__all__ = [
    "Diagnosis",
    "LRRangeTestResult",
    "LRSearch",
    "RangeTestWarning",
    "__version__",
    "callbacks",
    "data",
    "diagnose",
    "find_best_learning_rate",
    "lr_range_test",
    "optimizers",
    "plot_range_test",
    "plot_schedule",
    "schedules",
    "suggest",
]
