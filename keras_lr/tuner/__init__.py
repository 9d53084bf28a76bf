"""KerasTuner search over the learning rate and batch size together.

Import it explicitly (KerasTuner is slow to import)::

    from keras_lr import tuner
    hm = tuner.LRBatchSizeHyperModel(build_model, batch_sizes=(32, 64, 128))
    search = keras_tuner.BayesianOptimization(
        hm, objective="val_accuracy", max_trials=20,
        distribution_strategy=hm.distribution_strategy)

Distribution: the hypermodel takes the strategy in scope, else
`MirroredStrategy` over several GPUs, `OneDeviceStrategy` on one GPU, the
default strategy otherwise (`default_strategy`); on JAX, the
`keras.distribution` set, else `keras.distribution.DataParallel` over several
devices (`data_parallel_distribution`). The searched batch is the global
batch. Across machines, either give each trial a
`tf.distribute.MultiWorkerMirroredStrategy` (``distribution_strategy=`` of
the hypermodel and the tuner, with ``TF_CONFIG`` set on every worker), or run
trials in parallel with KerasTuner's distributed tuning: start the same
script with ``KERASTUNER_TUNER_ID=chief`` on one process and
``KERASTUNER_TUNER_ID=tuner0``, ``tuner1``, ... on the others, all with
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` set to the chief's
address; the chief runs the oracle and the workers train.
"""

from keras_lr.plot import plot_search
from keras_lr.tuner._feasibility import is_out_of_memory
from keras_lr.tuner._strategy import data_parallel_distribution, default_strategy
from keras_lr.tuner.hypermodel import LRBatchSizeHyperModel, scale_factor
from keras_lr.tuner.image_classifier import ImageClassifierHyperModel

__all__ = [
    "ImageClassifierHyperModel",
    "LRBatchSizeHyperModel",
    "data_parallel_distribution",
    "default_strategy",
    "is_out_of_memory",
    "plot_search",
    "scale_factor",
]
