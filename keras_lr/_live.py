"""Reading a model's state in the middle of `fit` without stalling the device.

On the JAX backend, `fit` keeps the current value of every variable in the
trainer's state (``model._jax_state``) between executions and writes it back
into the variables only at the end of an epoch, or when a callback reads
``callback.model``. That write-back (a "state sync") assigns every variable,
makes the next execution gather them all again, and its reads wait for the
device. The helpers here read the live arrays directly instead:

- `live_arrays` finds the live values of some variables (None where the
  variables themselves hold them: other backends, or between epochs), and
  `LiveIndex` keeps where they are for repeated reads;
- `fetch` copies arrays to the host, starting all transfers together;
- `PendingRead` starts a device-to-host copy now and hands it over at the
  next read, so that the host never waits for the device mid-epoch: the
  values it returns are one read interval old (the callbacks document this
  granularity).

The other backends keep their variables current; they read them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np


def _is_jax() -> bool:
    return keras.backend.backend() == "jax"


def live_arrays(model: Any, variables: Sequence[Any]) -> list[Any] | None:
    """The live values of `variables` in the JAX trainer's state, or None.

    None means the variables themselves are current (not JAX, outside
    `fit`, or a callback has just synced the state). A callback that reads
    the same variables at every check keeps a `LiveIndex` instead.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> live_arrays(model, model.weights) is None  # outside `fit`
    True
    """
    return LiveIndex(model, variables).arrays()


def _state_groups(model: Any) -> list[tuple[str, Sequence[Any]]]:
    groups = [
        ("trainable_variables", model.trainable_variables),
        ("non_trainable_variables", model.non_trainable_variables),
        ("metrics_variables", model.metrics_variables),
    ]
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        groups.append(("optimizer_variables", optimizer.variables))
    return groups


class LiveIndex:
    """Where some variables' live values sit in the JAX trainer's state.

    Finding them walks every variable of the model and its optimizer (about
    0.15 ms for a hundred variables); the positions found are kept, and
    checked against the state's group sizes at every read, so that a read
    in the middle of `fit` costs a few list lookups.

    Args:
        model: the model being trained.
        variables: the variables to read.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> LiveIndex(model, model.weights).arrays() is None  # outside `fit`
    True
    """

    def __init__(self, model: Any, variables: Sequence[Any]):
        self._model = model
        self._variables = list(variables)
        self._positions: list[tuple[str, int]] | None = None
        self._sizes: dict[str, int] = {}

    def _locate(self, state: dict[str, Any]) -> None:
        self._positions, self._sizes = None, {}
        where: dict[int, tuple[str, int]] = {}
        for key, group in _state_groups(self._model):
            values = state.get(key)
            if values is None or len(values) != len(group):
                continue
            self._sizes[key] = len(values)
            for i, variable in enumerate(group):
                where[id(variable)] = (key, i)
        try:
            self._positions = [where[id(v)] for v in self._variables]
        except KeyError:
            self._positions = None

    def arrays(self) -> list[Any] | None:
        """The live values, or None where the variables are current."""
        model = self._model
        if not _is_jax() or getattr(model, "_jax_state_synced", True):
            return None
        state = getattr(model, "_jax_state", None)
        if not state:
            return None
        if self._positions is None or any(
            len(state.get(key) or ()) != size for key, size in self._sizes.items()
        ):
            self._locate(state)
            if self._positions is None:
                return None
        return [state[key][i] for key, i in self._positions]


def fetch(arrays: Sequence[Any]) -> list[np.ndarray]:
    """Host copies of `arrays` (device arrays, tensors or numpy arrays).

    On JAX every transfer starts before the first is waited for.

    Example:

    >>> [a.tolist() for a in fetch([keras.ops.ones((2,)), np.zeros(1)])]
    [[1.0, 1.0], [0.0]]
    """
    if _is_jax():
        import jax

        return [np.array(a, copy=True) for a in jax.device_get(list(arrays))]
    return [np.array(keras.ops.convert_to_numpy(_read(a)), copy=True) for a in arrays]


def _read(value: Any) -> Any:
    """A tensor for `value`; a TensorFlow variable (a `tf.distribute`
    `MirroredVariable` among them, which numpy cannot convert) is read, which
    gives its replica-agnostic value."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(value, tf.Variable):
            return value.read_value()
    return value


def variable_values(model: Any, variables: Sequence[Any]) -> list[np.ndarray]:
    """Host copies of the current values of `variables`, with no state sync.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> [v.shape for v in variable_values(model, model.weights)]
    [(2, 1), (1,)]
    """
    live = live_arrays(model, variables)
    if live is None:
        if _is_jax() and not getattr(model, "_jax_state_synced", True):
            # Some variable is not in the trainer's state: write it back.
            model.jax_state_sync()
        live = [v.value for v in variables]
    return fetch(live)


class PendingRead:
    """A device-to-host copy started now, collected later.

    On JAX the trainer donates its state to the next execution, so the
    arrays are first copied on the device (an asynchronous dispatch, ordered
    before that execution); the host copy then proceeds while the device
    trains, and `result()` rarely waits. On the other backends nothing is
    copied at construction: `result()` reads the arrays then, so a variable
    passed there gives its value at `result()` (the callers pass only the
    JAX live arrays that `live_arrays` finds).

    Args:
        arrays: live device arrays (`live_arrays`).

    Example:

    >>> read = PendingRead([keras.ops.arange(3)])
    >>> read.result()[0].tolist()
    [0, 1, 2]
    """

    def __init__(self, arrays: Sequence[Any]):
        if _is_jax():
            import jax.numpy as jnp

            self._arrays = [jnp.copy(a) for a in arrays]
            for a in self._arrays:
                a.copy_to_host_async()
        else:
            self._arrays = list(arrays)

    def result(self) -> list[np.ndarray]:
        return fetch(self._arrays)
