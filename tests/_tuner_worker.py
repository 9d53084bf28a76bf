"""Runs a small KerasTuner search in its own process (for tests/test_tuner.py).

Logical CPU devices must be configured before TensorFlow initialises, and
KerasTuner's distributed mode and the kill-and-resume test need processes of
their own, so the tests start this script. It writes a JSON summary.

Usage: python tests/_tuner_worker.py TUNER DIRECTORY OUT.json [MAX_TRIALS]
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from keras_lr.data import load_fashion_mnist_sample  # noqa: E402
from keras_lr.tuner import LRBatchSizeHyperModel  # noqa: E402

N_TRAIN, N_VAL = 384, 128


class Probe(keras.callbacks.Callback):
    """Records the strategy the model trained under and the steps it ran."""

    runs: list = []  # noqa: RUF012

    def on_train_begin(self, logs=None):
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_train_end(self, logs=None):
        variable = self.model.trainable_variables[0]
        Probe.runs.append({
            "replicas": int(self.model.distribute_strategy.num_replicas_in_sync),
            "strategy": type(self.model.distribute_strategy).__name__,
            "mirrored_variable": isinstance(
                getattr(variable, "value", variable), tf.distribute.DistributedValues
            ),
            "steps": self.steps,
            "optimizer": type(self.model.optimizer).__name__,
            "momentum": float(self.model.optimizer.momentum),
            "nesterov": bool(self.model.optimizer.nesterov),
            "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
        })  # fmt: skip


def build(hp):
    units = hp.Choice("units", [8, 16])
    model = keras.Sequential([
        keras.Input((14, 14, 1)),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(10),
    ])  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.SGD(0.5, momentum=0.8, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main() -> None:
    name, directory, out = sys.argv[1:4]
    max_trials = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    (x, y), _ = load_fashion_mnist_sample()
    x = (x[:, ::2, ::2, None] / 255.0).astype("float32")
    y = y.astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x[:N_TRAIN], y[:N_TRAIN])).batch(7)
    val = (x[N_TRAIN : N_TRAIN + N_VAL], y[N_TRAIN : N_TRAIN + N_VAL])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    hm = LRBatchSizeHyperModel(
        build,
        batch_sizes=(32, 64, 128),
        lr_range=(1e-3, 1e-1),
        distribution_strategy=strategy,
    )
    common = dict(
        objective="val_accuracy",
        directory=directory,
        project_name="search",
        distribution_strategy=hm.distribution_strategy,
        overwrite=False,
        seed=int(os.environ.get("TUNER_SEED", "3")),
    )
    if name == "random":
        tuner = keras_tuner.RandomSearch(hm, max_trials=max_trials, **common)
    elif name == "bayesian":
        tuner = keras_tuner.BayesianOptimization(
            hm, max_trials=max_trials, num_initial_points=2, **common
        )
    else:
        tuner = keras_tuner.Hyperband(
            hm, max_epochs=2, factor=2, hyperband_iterations=1, **common
        )
    fit = {"epochs": 1} if name != "hyperband" else {}
    tuner.search(train, validation_data=val, callbacks=[Probe()], verbose=0, **fit)
    trials = []
    # A distributed worker holds an oracle client, with no trials of its own.
    is_client = type(tuner.oracle).__name__ == "OracleClient"
    for trial in ({} if is_client else tuner.oracle.trials).values():
        metrics = {
            key: trial.metrics.get_last_value(key)
            for key in trial.metrics.metrics
            if trial.metrics.get_last_value(key) is not None
        }
        trials.append({
            "id": trial.trial_id,
            "status": trial.status,
            "hp": trial.hyperparameters.values,
            "metrics": metrics,
        })  # fmt: skip
    with open(out, "w") as f:
        json.dump(
            {"trials": trials, "runs": Probe.runs, "n_train": N_TRAIN,
             "ref_batch": hm.reference_batch_size, "scaling": hm.lr_scaling},
            f,
        )  # fmt: skip
    print("done", len(trials), float(np.mean([r["steps"] for r in Probe.runs])))


if __name__ == "__main__":
    main()
