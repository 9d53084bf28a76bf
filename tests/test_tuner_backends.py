"""Tests of keras_lr.tuner on every backend, and under JAX `DataParallel`.

tests/test_tuner.py runs on TensorFlow (its searches use tf.distribute);
these run small real searches on JAX and PyTorch too.
"""

from __future__ import annotations

import pytest
from conftest import BACKEND

pytestmark = pytest.mark.multibackend

keras_tuner = pytest.importorskip("keras_tuner")

_SEARCH_UNDER_DATA_PARALLEL = """
import tempfile
import keras_tuner
import numpy as np
from keras_lr import tuner

seen = []


class Probe(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        value = self.model.trainable_variables[0].value
        seen.append((len(value.sharding.device_set), keras.distribution.distribution()))


rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")


def build(hp):
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])


def search(hm):
    seen.clear()
    t = keras_tuner.RandomSearch(
        hm, objective="loss", max_trials=2, seed=0, overwrite=True,
        directory=tempfile.mkdtemp(), project_name="p",
    )
    t.search(x, y, epochs=1, verbose=0)
    assert len(seen) == 2, seen
    for devices, distribution in seen:
        assert devices == 2 and distribution is not None, seen
    for trial in t.oracle.trials.values():
        batch = trial.hyperparameters.values["batch_size"]
        assert trial.metrics.get_last_value("num_replicas") == 2
        assert trial.metrics.get_last_value("per_replica_batch_size") == batch // 2


def hypermodel():
    return tuner.LRBatchSizeHyperModel(
        build, batch_sizes=(8, 16), lr_range=(1e-3, 1e-1), callbacks=[Probe()],
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


# The user's DataParallel (set by run_jax_data_parallel): used, and left set.
user = keras.distribution.distribution()
search(hypermodel())
assert keras.distribution.distribution() is user
# None set: "auto" makes a DataParallel over the devices, left unset after.
keras.distribution.set_distribution(None)
search(hypermodel())
assert keras.distribution.distribution() is None
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="runs once, in the JAX run")
def test_search_trains_under_jax_data_parallel():
    # Before: KerasTuner's `clear_session()` before each trial unset the
    # user's DataParallel, so trials trained on one device while their
    # records said 2 replicas, and the search left the distribution unset;
    # "auto" never used the second device.
    from conftest import run_jax_data_parallel

    assert run_jax_data_parallel(_SEARCH_UNDER_DATA_PARALLEL).startswith("ok")


_ODD_SAMPLES_UNDER_DATA_PARALLEL = """
import tempfile
import keras_tuner
import numpy as np
from keras_lr import tuner

fits = []


class Count(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        fits.append(1)


x = np.random.default_rng(0).normal(size=(100, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
hm = tuner.LRBatchSizeHyperModel(
    lambda hp: keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]),
    batch_sizes=(8, 16), lr_range=(1e-3, 1e-1), callbacks=[Count()],
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
for train, val in ((99, 64), (100, 63)):
    t = keras_tuner.RandomSearch(
        hm, objective="val_loss", max_trials=2, overwrite=True,
        directory=tempfile.mkdtemp(), project_name="p",
    )
    try:
        t.search(x[:train], y[:train], validation_data=(x[:val], y[:val]), verbose=0)
    except keras_tuner.errors.FatalValueError as error:
        assert "must be a multiple of 2" in str(error), error
    else:
        raise AssertionError("not refused")
assert not fits, "a trial trained"
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="runs once, in the JAX run")
def test_samples_that_do_not_split_over_jax_devices_stop_the_search():
    # Before: 99 training (or 63 validation) samples under a 2-device JAX
    # DataParallel failed every trial with jax's IndivisibleError at the
    # last batch of the epoch, after training on all the others.
    from conftest import run_jax_data_parallel

    assert run_jax_data_parallel(_ODD_SAMPLES_UNDER_DATA_PARALLEL).startswith("ok")
