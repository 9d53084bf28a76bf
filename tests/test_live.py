"""Tests of keras_lr._live: reading the live training state mid-epoch."""

import keras
import numpy as np
import pytest

from keras_lr import _live


class _Probe(keras.callbacks.Callback):
    """At one batch, reads the weights live, then through a state sync."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_begin(self, batch, logs=None):
        if batch != self.at:
            return
        model = self._model  # no JAX state sync
        variables = model.trainable_variables + model.optimizer.variables
        self.live_found = _live.live_arrays(model, variables) is not None
        self.live = _live.variable_values(model, variables)
        arrays = _live.live_arrays(model, variables)
        self.pending = _live.PendingRead(arrays) if arrays is not None else None
        synced = self.model  # syncs on JAX
        self.synced = [
            np.array(keras.ops.convert_to_numpy(v.value), copy=True)
            for v in synced.trainable_variables + synced.optimizer.variables
        ]


@pytest.mark.multibackend
def test_live_values_equal_the_synced_state_bitwise():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss="mse",
        steps_per_execution=1 if keras.backend.backend() == "torch" else 2,
    )
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    probe = _Probe(at=4)
    model.fit(x, x[:, :3], batch_size=8, epochs=1, callbacks=[probe], verbose=0)
    assert probe.live_found == (keras.backend.backend() == "jax")
    assert len(probe.live) == len(probe.synced)
    for a, b in zip(probe.live, probe.synced):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    # The model has trained 4 steps by then: the weights are not the initial.
    assert int(probe.synced[-len(model.optimizer.variables)]) == 4
    if probe.pending is not None:
        # Collected after the rest of the epoch ran, the copy still holds
        # the values of step 4 (the trainer donated the originals).
        for a, b in zip(probe.pending.result(), probe.synced):
            assert a.tobytes() == b.tobytes()


def test_fetch_copies():
    source = np.arange(3.0)
    (copy,) = _live.fetch([source])
    source[0] = 7.0
    assert copy.tolist() == [0.0, 1.0, 2.0]


class _IndexProbe(keras.callbacks.Callback):
    """Reads the same variables through one `LiveIndex` at every batch."""

    def on_train_begin(self, logs=None):
        model = self._model
        self.index = _live.LiveIndex(model, model.trainable_variables)
        self.reads = []

    def on_train_batch_begin(self, batch, logs=None):
        model = self._model  # no JAX state sync
        cached = self.index.arrays()
        fresh = _live.live_arrays(model, model.trainable_variables)
        self.reads.append((cached, fresh))


@pytest.mark.multibackend
def test_live_index_reads_the_same_arrays_as_a_fresh_lookup():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    probe = _IndexProbe()
    model.fit(x, x[:, :3], batch_size=8, epochs=2, callbacks=[probe], verbose=0)
    assert len(probe.reads) == 8
    live = [r for r in probe.reads if r[1] is not None]
    if keras.backend.backend() == "jax":
        # Mid-epoch reads find the live state (the first batch of an epoch
        # may still see the synced variables).
        assert len(live) >= 6
    else:
        assert live == [] and all(r[0] is None for r in probe.reads)
    for cached, fresh in live:
        assert cached is not None and len(cached) == len(fresh)
        # The very same device arrays, not copies.
        assert all(a is b for a, b in zip(cached, fresh))
