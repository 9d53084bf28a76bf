"""In-memory snapshot and exact restore of a model's training state.

A `TrainingState` holds host copies of every variable that training can
change (model weights and non-trainable state, random-seed states, every
optimizer variable including `iterations` and the loss-scale state of a
`LossScaleOptimizer`, every metric variable, the states of stateful
recurrent layers), the optimizer's learning-rate object (a variable or a
`LearningRateSchedule`) and the model attributes that `fit` rewrites
(`train_function`, `history`, `stop_training`, ...). `restore()` puts all
of it back bitwise. Nothing is written to disk.

The range test and the `DivergenceDetector` share this one mechanism.
"""

from __future__ import annotations

import contextlib
import random
import sys
from typing import Any

import numpy as np

from keras_lr import _live

#: Model attributes that `fit`, `evaluate` and keras_lr itself rewrite.
_MODEL_ATTRS = (
    "train_function",
    "test_function",
    "predict_function",
    "stop_training",
    "history",
    "steps_per_execution",
    "_loss_tracker",
    "train_step",
    "_eval_epoch_iterator",
)

_MISSING = object()


def base_optimizer(optimizer: Any) -> Any:
    """The optimizer that owns the learning rate (unwraps loss scaling).

    Example:

    >>> import keras
    >>> opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    >>> type(base_optimizer(opt)).__name__
    'SGD'
    """
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    return optimizer


def set_attr(obj: Any, name: str, value: Any) -> None:
    """Sets or deletes (``value is _MISSING``) an attribute, bypassing tracking.

    Keras layers and optimizers track what is assigned to them; the objects
    keras_lr swaps in and out for a while (a loss recorder, a sweep
    schedule) must not be tracked, or they would join `model.metrics` and
    `optimizer.variables`.
    """
    if value is _MISSING:
        if name in vars(obj):
            object.__delattr__(obj, name)
    else:
        object.__setattr__(obj, name, value)


def distribution_scope(model: Any) -> Any:
    """The scope of the model's `tf.distribute` strategy, or a null context.

    On TensorFlow a model compiled under a strategy's scope has it as
    ``model.distribute_strategy``; variables created for it (an optimizer's
    slots, a recorder's buffer) must be created in that scope. Other
    backends' models have no such attribute.
    """
    strategy = getattr(model, "distribute_strategy", None)
    scope = getattr(strategy, "scope", None)
    if scope is None:
        return contextlib.nullcontext()
    return scope()


def _keras_seed_generator() -> Any:
    """Keras's global `SeedGenerator` (unseeded `keras.random` ops), or None.

    Read without creating it (a private attribute of Keras's global state;
    None where that moves in a later Keras).
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    except ImportError:  # pragma: no cover (a Keras that moved it)
        return None
    return global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)


def _set_keras_seed_generator(generator: Any) -> None:
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, generator)


class GlobalRandomState:
    """The process's global random generators, captured to be put back.

    Keras draws from them where no seed is given: the array adapter shuffles
    with numpy's global generator, and on PyTorch each `fit` draws its data
    loader's seed (and unseeded dropout its masks) from torch's, and an
    unseeded `keras.random` op draws from Keras's global `SeedGenerator`. A
    range test that consumed them would change what a later `fit` does; the
    one-call APIs put them back. Python's `random`, numpy's global
    generator, Keras's global seed generator (removed again if it did not
    exist yet) and, when torch is imported, torch's CPU and CUDA generators
    are kept.

    Example:

    >>> state = GlobalRandomState()
    >>> a = np.random.random()
    >>> state.restore()
    >>> bool(np.random.random() == a)
    True
    """

    def __init__(self) -> None:
        self._python = random.getstate()
        self._numpy = np.random.get_state()  # noqa: NPY002 (the global one)
        self._torch = None
        torch = sys.modules.get("torch")
        if torch is not None:
            cuda = None
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                cuda = torch.cuda.get_rng_state_all()
            self._torch = (torch.get_rng_state(), cuda)
        generator = _keras_seed_generator()
        self._keras = None
        if generator is not None:
            from keras import ops

            value = np.array(ops.convert_to_numpy(generator.state.value), copy=True)
            self._keras = (generator, value)

    def restore(self) -> None:
        random.setstate(self._python)
        np.random.set_state(self._numpy)  # noqa: NPY002
        if self._keras is None:
            if _keras_seed_generator() is not None:
                _set_keras_seed_generator(None)
        else:
            generator, value = self._keras
            _set_keras_seed_generator(generator)
            generator.state.assign(value)
        if self._torch is not None:
            torch = sys.modules["torch"]
            cpu, cuda = self._torch
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)


class TrainingState:
    """A snapshot of everything training changes, restorable bitwise.

    Args:
        model: a compiled Keras model. When the model and its optimizer are
            built, their variables are captured; otherwise only the
            attributes are, and `capture_variables()` can be called once the
            model is built (the range-test callback does so at the start of
            `fit`).

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    >>> state = TrainingState(model)
    >>> before = [w.copy() for w in model.get_weights()]
    >>> _ = model.fit(np.ones((8, 3)), np.zeros((8, 1)), verbose=0)
    >>> state.restore()
    >>> all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    True
    """

    def __init__(self, model: Any, *, capture: bool = True):
        self.model = model
        self.optimizer = getattr(model, "optimizer", None)
        self._attrs = {name: vars(model).get(name, _MISSING) for name in _MODEL_ATTRS}
        self._lr_object = None
        if self.optimizer is not None:
            self._lr_object = base_optimizer(self.optimizer)._learning_rate
        self._values: list[tuple[Any, np.ndarray]] | None = None
        self._replicas: list[tuple[list[Any], list[np.ndarray]]] = []
        self._metric_ids: set[int] = set()
        # Optimizers not built yet, with the ids of the variables they have
        # (the iteration count, a float rate): `restore()` un-builds those
        # built since, by `capture_variables()`, by a `fit`, or by the build
        # of a model without an `Input` from its first batch (which builds
        # its optimizer too).
        self._unbuilt_optimizers: list[tuple[Any, set[int]]] = (
            [
                (opt, {id(v) for v in opt._variables})
                for opt in _optimizer_chain(self.optimizer)
                if not opt.built
            ]
            if self.optimizer is not None
            else []
        )
        # The compiled loss and metrics build on the first batch of a `fit`
        # (drawing that batch from the data, and so from the global random
        # generators when arrays are shuffled): those not built yet go back
        # to unbuilt on `restore()`, for the next `fit` to do the same.
        self._unbuilt_compiled = [
            (obj, {id(m) for m in getattr(obj, "_metrics", ())})
            for obj in (
                vars(model).get("_compile_loss"),
                vars(model).get("_compile_metrics"),
            )
            if obj is not None and not obj.built
        ]
        if capture:
            self.capture_variables()

    def variables(self) -> list[Any]:
        """The variables this state captures (each once)."""
        return self._variables()

    def set_values(self, variables: list[Any], values: list[np.ndarray]) -> None:
        """Takes host values of `variables` instead of `capture_variables()`.

        Args:
            variables: the variables of `variables()`.
            values: their host values, read elsewhere (an asynchronous read).
        """
        self._values = list(zip(variables, values))
        self._metric_ids = {id(v) for v in self.model.metrics_variables}

    @property
    def has_variables(self) -> bool:
        return self._values is not None

    def _variables(self) -> list[Any]:
        model = self.model
        variables = list(model.variables)
        if self.optimizer is not None:
            variables += list(self.optimizer.variables)
        variables += list(model.metrics_variables)
        variables += _stateful_rnn_states(model)
        # The same variable may appear twice (a shared layer); keep one.
        seen: set[int] = set()
        unique = []
        for v in variables:
            if id(v) not in seen:
                seen.add(id(v))
                unique.append(v)
        return unique

    def capture_variables(self) -> bool:
        """Captures variable values if the model is built.

        An optimizer not built yet is built first (with zero slots), as
        `fit` would build it.

        Returns:
            Whether the values were captured.
        """
        if not self.model.built:
            return False
        if self.optimizer is not None and not self.optimizer.built:
            # As `fit` would: an optimizer's slots exist once it is built,
            # under the model's distribution strategy (TensorFlow).
            # `restore()` un-builds it: built for the trainable variables
            # of now, it would refuse those of a later `fit` after the
            # user unfreezes a layer.
            with distribution_scope(self.model):
                self.optimizer.build(self.model.trainable_variables)
        variables = self._variables()
        values = _live.variable_values(self.model, variables)
        self._values = list(zip(variables, values))
        self._replicas = _replica_copies(self.model, variables)
        self._metric_ids = {id(v) for v in self.model.metrics_variables}
        return True

    def nbytes(self) -> int:
        """Host memory held by the snapshot, in bytes."""
        if self._values is None:
            return 0
        return int(sum(value.nbytes for _, value in self._values))

    def restore_variables(self) -> None:
        """Puts every captured variable value back."""
        if self._values is None:
            return
        for variable, value in self._values:
            variable.assign(value)
        for components, values in self._replicas:
            for component, value in zip(components, values):
                component.assign(value)
        # Metrics created during the run (a compiled metric built lazily on
        # its first update) go back to their initial state.
        for metric in self.model.metrics:
            if any(id(v) not in self._metric_ids for v in metric.variables):
                metric.reset_state()

    def restore_attributes(self, skip: tuple[str, ...] = ()) -> None:
        """Puts back the model attributes and the optimizer's learning rate.

        Args:
            skip: attributes to leave as they are (a callback restoring inside
                `fit` leaves `history`, which `fit` still returns).
        """
        for name, value in self._attrs.items():
            if name not in skip:
                set_attr(self.model, name, value)
        if self.optimizer is not None:
            set_attr(base_optimizer(self.optimizer), "_learning_rate", self._lr_object)

    def restore(self, skip: tuple[str, ...] = ()) -> None:
        """Restores attributes first, then variables (so metrics line up).

        An optimizer that `capture_variables()` built goes back to unbuilt,
        as the model's next `fit` would have found it.
        """
        self.restore_attributes(skip)
        self.restore_variables()
        for optimizer, kept in self._unbuilt_optimizers:
            if optimizer.built:
                _unbuild(optimizer, kept)
        self._unbuilt_optimizers = []
        for compiled, kept in self._unbuilt_compiled:
            _unbuild_compiled(compiled, kept)


def _replica_copies(
    model: Any, variables: list[Any]
) -> list[tuple[list[Any], list[np.ndarray]]]:
    """The per-replica copies of a model's non-trainable mirrored variables.

    Under a `tf.distribute` strategy of several replicas, a non-trainable
    variable that its layer updates in each replica (the moving statistics
    of a `BatchNormalization` that is not ``synchronized``) has one copy per
    replica, and the copies drift apart; reading the variable gives the
    first replica's. Each copy is kept here, to be put back as it was.

    Returns:
        ``(copies, values)`` for each such variable among `variables`.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return []
    non_trainable = {id(v) for v in model.non_trainable_variables}
    found = []
    for variable in variables:
        if id(variable) not in non_trainable:
            continue
        copies = getattr(variable.value, "values", None)
        if isinstance(copies, tuple) and len(copies) > 1:
            values = [np.array(c.read_value(), copy=True) for c in copies]
            found.append((list(copies), values))
    return found


def variables_finite(variables: Any) -> bool:
    """Whether every floating-point value of `variables` is finite.

    Computed on the device; one boolean comes back to the host.

    Example:

    >>> import keras
    >>> v = keras.Variable([1.0, 2.0])
    >>> variables_finite([v]), variables_finite([keras.Variable([1.0, np.nan])])
    (True, False)
    """
    import keras

    ok = None
    for variable in variables:
        if "float" not in str(variable.dtype):
            continue
        finite = keras.ops.all(keras.ops.isfinite(variable.value))
        ok = finite if ok is None else keras.ops.logical_and(ok, finite)
    return ok is None or bool(keras.ops.convert_to_numpy(ok))


def stateful_layers(model: Any) -> list[Any]:
    """The model's layers that carry state from batch to batch.

    Keras's recurrent layers with ``stateful=True``: each takes batches of
    one fixed size and keeps the last state of each batch in variables of
    its own, which it does not track (they are in no ``model.variables``,
    yet `fit` changes them on TensorFlow and PyTorch).

    Example:

    >>> import keras
    >>> model = keras.Sequential([
    ...     keras.Input((5, 3), batch_size=4),
    ...     keras.layers.SimpleRNN(2, stateful=True),
    ... ])
    >>> [layer.name for layer in stateful_layers(model)] == [model.layers[0].name]
    True
    """
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if getattr(layer, "stateful", False) is True
    ]


def _stateful_rnn_states(model: Any) -> list[Any]:
    """The state variables of the model's stateful layers (built ones).

    Example:

    >>> import keras
    >>> model = keras.Sequential([
    ...     keras.Input((5, 3), batch_size=4),
    ...     keras.layers.SimpleRNN(2, stateful=True),
    ... ])
    >>> [tuple(v.shape) for v in _stateful_rnn_states(model)]
    [(4, 2)]
    """
    import keras

    found = []
    for layer in stateful_layers(model):
        states = getattr(layer, "states", None)
        if states is not None:
            found += [
                v for v in keras.tree.flatten(states) if isinstance(v, keras.Variable)
            ]
    return found


def _optimizer_chain(optimizer: Any) -> list[Any]:
    """An optimizer and the ones it wraps (a `LossScaleOptimizer`'s inner)."""
    chain = [optimizer]
    while hasattr(chain[-1], "inner_optimizer"):
        chain.append(chain[-1].inner_optimizer)
    return chain


def _unbuild_compiled(compiled: Any, kept: set[int]) -> None:
    """Puts a model's `CompileLoss` or `CompileMetrics` back to unbuilt.

    Their `build` makes their metrics anew; the ones it tracked since
    (a multi-output loss's per-output means) are dropped, so that the next
    build does not track them twice.
    """
    if not compiled.built:
        return
    tracker = getattr(compiled, "_tracker", None)
    for metric in list(getattr(compiled, "_metrics", ())):
        if id(metric) not in kept and tracker is not None:
            locked = tracker.locked
            tracker.unlock()
            tracker.untrack(metric)
            if locked:
                tracker.lock()
    compiled.built = False


def _unbuild(optimizer: Any, kept: set[int]) -> None:
    """Puts a built Keras optimizer back to unbuilt.

    The variables its `build` created (slots, a loss scale) are dropped;
    those it had before (the iteration count, a float rate) stay. Its next
    `build`, at the start of a `fit`, creates them again for the trainable
    variables of that time.
    """
    for variable in list(optimizer._variables):
        if id(variable) not in kept:
            optimizer._untrack_variable(variable)
    optimizer._trainable_variables = []
    optimizer._trainable_variables_indices = {}
    optimizer.built = False
