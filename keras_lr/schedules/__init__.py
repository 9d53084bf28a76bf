"""In-graph learning-rate schedules: cyclical, 1cycle, warmup, decay, restarts.

Each is a `keras.optimizers.schedules.LearningRateSchedule` computed with
`keras.ops` from the optimizer's iteration counter, inside the compiled
train step (TensorFlow, JAX, PyTorch; `jit_compile`, `steps_per_execution`),
registered for serialization: a model compiled with one saves as `.keras`
and loads back with `keras.models.load_model`, once `keras_lr` is imported.

>>> import keras
>>> from keras_lr.schedules import OneCycle
>>> opt = keras.optimizers.SGD(learning_rate=OneCycle(0.1, total_steps=1000))
>>> round(float(opt.learning_rate), 4)
0.004
"""

from keras_lr.schedules._base import Shifted
from keras_lr.schedules.cosine import (
    CosineRestarts,
    WarmupCosineDecay,
    WarmupStableDecay,
)
from keras_lr.schedules.cyclic import CyclicLR, CyclicMomentum
from keras_lr.schedules.inverse_sqrt import InverseSqrt
from keras_lr.schedules.join import Join
from keras_lr.schedules.one_cycle import OneCycle, OneCycleMomentum
from keras_lr.schedules.scaled import Scaled, find_scaled, track_scaled, untrack_scaled
from keras_lr.schedules.warmup import Warmup

__all__ = [
    "CosineRestarts",
    "CyclicLR",
    "CyclicMomentum",
    "InverseSqrt",
    "Join",
    "OneCycle",
    "OneCycleMomentum",
    "Scaled",
    "Shifted",
    "Warmup",
    "WarmupCosineDecay",
    "WarmupStableDecay",
    "find_scaled",
    "track_scaled",
    "untrack_scaled",
]
