"""`lr_range_test` and `find_best_learning_rate`: the one-call API."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from keras_lr import _validate, suggest
from keras_lr._state import (
    _MISSING,
    GlobalRandomState,
    TrainingState,
    base_optimizer,
    distribution_scope,
    set_attr,
    stateful_layers,
)
from keras_lr.range_test._data import (
    _is_array_like,
    _take,
    batch_shards,
    check_cardinality,
    check_sample_weight,
    check_targets,
    check_validation_data,
    class_weights_as_sample_weights,
    first_batch,
    fit_arguments,
    has_no_batch,
    is_one_shot,
    num_samples,
    split_data,
)
from keras_lr.range_test._sweep import SweepSchedule
from keras_lr.range_test.callback import LRRangeTest, StepLossSession
from keras_lr.range_test.result import LRRangeTestResult, RangeTestWarning

__all__ = ["LRSearch", "find_best_learning_rate", "lr_range_test"]


def _check_compiled(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` must be a keras.Model. Received: {type(model).__name__}"
        )
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError(
            "The model must be compiled before a range test: call "
            "`model.compile(optimizer=..., loss=...)` first."
        )


_NO_BATCH = (
    "The range test ran no step: the data yielded no batch. "
    "Check that `x` is not empty."
)


def _build_from_first_batch(model: keras.Model, fit_kwargs: dict) -> None:
    """Builds an unbuilt model symbolically from the data's first batch.

    JAX and torch build the model this way at the start of `fit`; the
    TensorFlow trainer builds it only while tracing the first step, after
    the callbacks' `on_train_begin`, too late for the snapshot that restores
    it. Building it first, as Keras would, lets the range test capture and
    restore every variable.

    Raises:
        ValueError: if the data yields no batch.
    """
    batch = first_batch(fit_kwargs)
    if batch is None:
        raise ValueError(_NO_BATCH)

    def to_array(v: Any) -> Any:
        if v is None or (hasattr(v, "shape") and hasattr(v, "dtype")):
            return v
        return np.asarray(v)

    batch = keras.tree.map_structure(to_array, batch)
    # The same private method `fit` calls on JAX and torch.
    with distribution_scope(model):
        model._symbolic_build(data_batch=batch)


#: Steps that let a `LossScaleOptimizer`'s dynamic scale settle.
_SETTLE_STEPS = 16


def _settle_loss_scale(
    model: keras.Model,
    x: Any,
    y: Any,
    batch_size: int | None,
    state: Any,
    weights: dict,
) -> None:
    """Lets a dynamic loss scale settle before the sweep (mixed float16).

    A `LossScaleOptimizer` starts at a scale of 2**15 and halves it at
    every step whose float16 gradients overflow, skipping that update. The
    sweep's rate advances only with applied updates while each recorded
    step is labelled with the next rate of the sweep, so skipped first
    steps would label the whole curve with rates up to a few steps of the
    sweep (a factor of several) too high. Up to `_SETTLE_STEPS` steps at a
    rate of zero let the scale find its level; then everything but the
    scale is put back (`state`, captured before), the scale is halved once
    more for a margin, and the sweep starts.
    Data that can be iterated only once is left alone (the sweep needs its
    first batches). `weights` holds `fit`'s ``sample_weight`` and
    ``class_weight`` where given.
    """
    optimizer = model.optimizer
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return
    if is_one_shot(x):
        return
    kwargs = fit_arguments(
        x,
        y,
        batch_size,
        _SETTLE_STEPS,
        weights.get("sample_weight"),
        weights.get("class_weight"),
    )
    kwargs.update(epochs=1, steps_per_epoch=_SETTLE_STEPS)
    session = StepLossSession(model, _SETTLE_STEPS)
    try:
        session.install(0.0)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ran out of data.*")
            warnings.filterwarnings("ignore", message=".*shuffle=True.*")
            model.fit(**kwargs, verbose=0)
        scale = np.array(keras.ops.convert_to_numpy(optimizer.dynamic_scale.value))
    finally:
        session.uninstall()
        state.restore_variables()
    # The settled scale is the largest that the batches seen did not
    # overflow; half of it leaves a margin for the sweep's other batches.
    optimizer.dynamic_scale.assign(scale * 0.5)


def lr_range_test(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    batch_size: int | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exponential",
    smoothing: float = 0.98,
    diverge_threshold: float = 4.0,
    validation_data: Any = None,
    validation_steps: int | None = None,
    steps_per_execution: int | None = None,
    sample_weight: Any = None,
    class_weight: dict | None = None,
    verbose: int = 1,
) -> LRRangeTestResult:
    """Runs an LR range test and leaves the model exactly as it was.

    The learning rate sweeps from `start_lr` to `end_lr` over `num_steps`
    training steps (``lr_i = start_lr * (end_lr/start_lr) ** (i/(n-1))`` in
    exponential mode), computed in the compiled step; each step's own loss
    is recorded on the device. The sweep stops early when the smoothed loss
    exceeds `diverge_threshold` times its best. Whether it returns or raises,
    every weight, optimizer variable, the learning rate (float or schedule),
    the metrics and the compiled functions are restored bitwise, in memory,
    and so are the global random generators (Python's, numpy's and torch's),
    which Keras draws from to shuffle arrays and, on PyTorch, for its data
    loader and unseeded dropout: a later `fit` trains as if no test had run.
    What the data keeps outside the model is not restored: a
    `tf.data.Dataset` that reshuffles each iteration (``shuffle`` without
    a seed) and a `PyDataset` whose ``on_epoch_end`` reshuffles go on from
    where the test left them. An optimizer the test found unbuilt (a
    freshly compiled model) is left unbuilt.

    Args:
        model: a compiled Keras model.
        x: what `model.fit` takes: arrays, a dict or list of arrays, a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, a generator or
            another iterable of batches. Cycled when it runs out.
        y: targets, for array inputs.
        batch_size: for array inputs (default 32).
        start_lr: first rate, > 0.
        end_lr: last rate, > `start_lr`.
        num_steps: steps of the sweep, >= 10.
        mode: ``"exponential"`` or ``"linear"``.
        smoothing: EMA factor of the smoothed loss, in [0, 1).
        diverge_threshold: stop when the smoothed loss exceeds this multiple
            of its best, > 1.
        validation_data: optional ``(x_val, y_val)`` or
            ``(x_val, y_val, sample_weight)`` (a tuple or a list), or a
            dataset that can be iterated more than once, whose loss is
            measured at about ten points of the sweep.
        validation_steps: batches of `validation_data` per measurement
            (all of it by default); needed for an infinite dataset.
        steps_per_execution: steps per compiled call for the sweep (the
            model's own setting by default).
        sample_weight: one weight per sample of array data, as in `fit` (a
            dataset yields its own ``(x, y, sample_weight)`` batches).
        class_weight: ``{class index: weight}``, as in `fit`: each sample's
            loss is weighted by its class's weight.
        verbose: 0 silent, 1 progress bar.

    Returns:
        An `LRRangeTestResult`.

    Raises:
        TypeError: for a `class_weight` that is not a dict, or a
            `sample_weight` that is not an array.
        ValueError: on bad arguments, an uncompiled model, empty data, or a
            loss that is not finite at the first step.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(512, 4)).astype("float32")
    >>> y = x @ np.ones((4, 1), dtype="float32")
    >>> result = lr_range_test(model, x, y, start_lr=1e-4, num_steps=50, verbose=0)
    >>> result.diverged, float(model.optimizer.learning_rate)
    (True, 0.01)
    """
    _check_compiled(model)
    callback = LRRangeTest(
        start_lr,
        end_lr,
        num_steps,
        mode,
        smoothing,
        diverge_threshold,
        validation_data=validation_data,
        validation_steps=validation_steps,
        progress=bool(_validate.check_verbose(verbose)),
    )
    if steps_per_execution is not None:
        steps_per_execution = _validate.check_int(
            "steps_per_execution", steps_per_execution, minimum=1
        )
    batch_size = _validate.check_optional_int("batch_size", batch_size, minimum=1)
    check_targets(model, x, y)
    weights = _fit_weights(sample_weight, class_weight)
    fit_kwargs = fit_arguments(
        x,
        y,
        batch_size,
        callback.num_steps,
        sample_weight,
        weights.get("class_weight"),
    )
    # Taken before the data is first read (a shuffling loader draws from the
    # global generators) and before a model without an `Input` is built
    # (which builds its optimizer and compiled loss too): both go back.
    state = TrainingState(model, capture=False)
    rng = GlobalRandomState()
    try:
        if not model.built:
            _build_from_first_batch(model, fit_kwargs)
        elif has_no_batch(x, fit_kwargs):
            # Checked up front: on TensorFlow, a step on no data still counts.
            raise ValueError(_NO_BATCH)
        state.capture_variables()
    except BaseException:
        state.restore()
        rng.restore()
        raise
    callback._given_state = state
    try:
        if steps_per_execution is not None:
            set_attr(model, "steps_per_execution", steps_per_execution)
        _settle_loss_scale(model, x, y, batch_size, state, weights)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ran out of data.*")
            warnings.filterwarnings("ignore", message=".*shuffle=True.*")
            model.fit(**fit_kwargs, callbacks=[callback], verbose=0)
    finally:
        callback.restore()
        state.restore()
        rng.restore()
    result = callback.result
    if result is None or len(result) == 0:
        raise ValueError(_NO_BATCH)
    if not math.isfinite(result.losses[0]):
        raise ValueError(
            "The loss was not finite at the first step of the range test "
            f"(lr={result.lrs[0]:.3g}), before the learning rate could matter: "
            "check the data, the labels and the loss. The model was restored."
        )
    return result


def _fit_weights(sample_weight: Any, class_weight: Any) -> dict:
    """`fit`'s ``sample_weight`` and ``class_weight``, those that are given.

    Raises:
        TypeError: for a `class_weight` that is not a dict of numbers.
        ValueError: for both at once (`fit` takes one or the other) or a
            negative class weight.
    """
    weights: dict = {}
    if sample_weight is not None:
        weights["sample_weight"] = sample_weight
    if class_weight is None:
        return weights
    if sample_weight is not None:
        raise ValueError(
            "Arguments `sample_weight` and `class_weight` cannot be given "
            "together (as in `fit`): fold the class weights into the sample "
            "weights."
        )
    if not isinstance(class_weight, dict):
        raise TypeError(
            "Argument `class_weight` must be a dict mapping class indices to "
            f"weights. Received: class_weight={class_weight!r} (of type "
            f"{type(class_weight).__name__})"
        )
    table = {}
    for k, v in class_weight.items():
        # An integral float (2.0) names a class as Keras's array path reads
        # it (``class_weight.get(int(label))``); it is passed on as an int.
        integral = isinstance(k, (float, np.floating)) and float(k).is_integer()
        if isinstance(k, bool) or not (isinstance(k, (int, np.integer)) or integral):
            raise TypeError(
                "Argument `class_weight` must map int class indices to weights. "
                f"Received the key {k!r} (of type {type(k).__name__})"
            )
        weight = _validate.check_real(f"class_weight[{k}]", v)
        if not weight >= 0.0 or not math.isfinite(weight):
            raise ValueError(
                f"Argument `class_weight` must hold finite weights >= 0. "
                f"Received: class_weight[{k}]={v!r}"
            )
        table[int(k)] = weight
    weights["class_weight"] = table
    return weights


@dataclass
class LRSearch:
    """What `find_best_learning_rate(..., return_details=True)` returns.

    Attributes:
        learning_rate: the rate chosen: without a race, the curve rule's;
            with one, the winner interpolated from the candidates' scores
            (`keras_lr.suggest.race_winner`), usually between two of them.
        range_test: the `LRRangeTestResult` the candidates were read from.
        candidates: the rates raced (empty without a race).
        scores: each candidate's race score: its loss on `validation_data`,
            or else on the held-out part of the data (`holdout`), or else
            its mean training loss over the last third of its race.
        steps: training steps spent in all (range test plus race).

    Example:

    >>> curve = LRRangeTestResult(np.geomspace(1e-4, 1.0, 30), np.linspace(2, 1, 30))
    >>> search = LRSearch(0.05, curve, candidates=[0.01, 0.03, 0.1],
    ...                   scores=[1.3, 1.1, 1.2])
    >>> min(search.candidates) <= search.learning_rate <= max(search.candidates)
    True
    """

    learning_rate: float
    range_test: LRRangeTestResult
    candidates: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    steps: int = 0


#: The most samples held out of a race to score it (a cost bound).
MAX_HOLDOUT_SAMPLES = 2048
#: Fixed chunks of held-out arrays scored separately, so that two
#: candidates' scores can be compared by their paired differences
#: (`keras_lr.suggest.race_winner`'s one-standard-error rule).
SCORE_CHUNKS = 8
#: ...of at least this many samples each (fewer held-out samples: one score).
_MIN_CHUNK = 16


def _split_holdout(
    x: Any, y: Any, weights: dict, holdout: float, seed: int
) -> tuple[Any, Any, dict, tuple | None]:
    """A random slice of array data, kept out of the search to score the race.

    Returns the kept ``x``, ``y`` and `weights` (``sample_weight`` cut to
    the kept samples) and the held-out ``(x, y, sample_weight)``: the
    held-out samples' own weights, or their classes' weights, so that the
    race is scored on the loss that `fit` minimises.
    """
    if holdout == 0.0 or y is None or not _is_array_like(x):
        return x, y, weights, None
    check_cardinality(x, y)
    n = num_samples(x)
    k = min(round(holdout * n), MAX_HOLDOUT_SAMPLES)
    # Under a data-parallel distribution, data whose batches split evenly
    # across the devices is cut into parts that still do.
    k -= k % batch_shards()
    if k < 1 or n - k < 1:
        return x, y, weights, None
    index = np.random.default_rng(seed).permutation(n)
    held, kept = np.sort(index[:k]), np.sort(index[k:])
    w = weights.get("sample_weight")
    if w is not None:
        weights = {**weights, "sample_weight": _take(w, kept)}
        held_w = _take(w, held)
    elif "class_weight" in weights:
        held_w = class_weights_as_sample_weights(
            _take(y, held), weights["class_weight"]
        ).astype(keras.config.floatx())
    else:
        held_w = None
    scoring = (_take(x, held), _take(y, held), held_w)
    return _take(x, kept), _take(y, kept), weights, scoring


def _check_not_stateful(model: Any, race: bool) -> None:
    """Refuses a race for a model with stateful recurrent layers.

    Such a layer takes batches of one fixed size, and the race's held-out
    split and scoring chunks would hand it others. The range test alone
    (``race=False``) restores the layers' states with the rest.
    """
    layers = stateful_layers(model) if race else []
    if layers:
        names = ", ".join(f"`{layer.name}`" for layer in layers)
        raise ValueError(
            "`find_best_learning_rate` cannot race candidates for a model with "
            f"stateful recurrent layers ({names}): they take batches of one "
            "fixed size, and the race holds out and scores parts of the data "
            "of other sizes. Pass `race=False` to use the range test alone "
            "(it puts the layers' states back)."
        )


def _race_arguments(
    x: Any, y: Any, batch_size: int | None, steps: int, seed: int, weights: dict
) -> dict:
    """Fit arguments of a race: the same batches, in the same order, for all."""
    if _is_array_like(x):
        n = num_samples(x)
        batch_size = batch_size or 32
        rng = np.random.default_rng(seed)
        index = rng.permutation(n)
        need = steps * batch_size
        index = np.resize(index, need) if need > n else index[:need]
        kwargs = {
            "x": _take(x, index),
            "y": None if y is None else _take(y, index),
            "batch_size": batch_size,
            "epochs": 1,
            "shuffle": False,
        }
        if "sample_weight" in weights:
            kwargs["sample_weight"] = _take(weights["sample_weight"], index)
        if "class_weight" in weights:
            kwargs["class_weight"] = weights["class_weight"]
        return kwargs
    return fit_arguments(
        x,
        y,
        batch_size,
        steps,
        weights.get("sample_weight"),
        weights.get("class_weight"),
    )


def _race(
    model: Any,
    x: Any,
    y: Any,
    batch_size: int | None,
    lrs: list[float],
    steps: int,
    validation_data: Any,
    seed: int,
    validation_steps: int | None = None,
    weights: dict | None = None,
) -> tuple[list[float], list[np.ndarray | None]]:
    """Trains from the same state at each rate; returns each one's score.

    Also returns each one's paired samples: the loss of each of
    `SCORE_CHUNKS` fixed chunks of held-out arrays, or each step's training
    loss over the last third of the race (the same batches for every
    candidate); None where there are none (a held-out dataset).
    """
    weights = weights or {}
    state = TrainingState(model)
    rng = GlobalRandomState()
    session = StepLossSession(model, steps)
    fit_kwargs = _race_arguments(x, y, batch_size, steps, seed, weights)
    # A float rate lives in an optimizer variable: set it per candidate and
    # keep one compiled function (the snapshot restores the variable).
    lr_variable = base_optimizer(model.optimizer)._learning_rate
    if not isinstance(lr_variable, keras.Variable):
        lr_variable = None
    scores: list[float] = []
    samples: list[np.ndarray | None] = []
    scoring: dict = {}
    try:
        for i, lr in enumerate(lrs):
            state.restore_variables()
            # The same draws for every candidate: data that shuffles from the
            # global generators as it is iterated (a torch DataLoader's
            # sampler) serves each one the same batches.
            rng.restore()
            session.clear()
            if i and not _is_array_like(x):
                # A fresh pass from the first batch: every candidate trains
                # on the same batches (a shared cycle would go on where the
                # previous candidate stopped).
                fit_kwargs = _race_arguments(x, y, batch_size, steps, seed, weights)
            if lr_variable is None:
                session.install(SweepSchedule(lr, lr, steps, "linear"))
            else:
                if i == 0:
                    session.install(lr_variable)
                lr_variable.assign(lr)
            with warnings.catch_warnings():
                # Keras ignores `shuffle` for a dataset, and says so.
                warnings.filterwarnings("ignore", message=".*shuffle=True.*")
                model.fit(**fit_kwargs, verbose=0)
            losses = session.recorder.recorded()
            tail = losses[-max(1, losses.size // 3) :]
            paired = None
            if validation_data is not None and np.all(np.isfinite(tail)):
                session.recorder.recording = False
                score, paired = _score(
                    model, validation_data, validation_steps, scoring
                )
                session.recorder.recording = True
            else:
                score = float(np.mean(tail)) if tail.size else float("inf")
                paired = np.asarray(tail, dtype="float64")
            scores.append(score if math.isfinite(score) else float("inf"))
            samples.append(paired)
    finally:
        session.uninstall()
        state.restore()
        rng.restore()
    return scores, samples


def _all_numpy(a: Any) -> bool:
    """Numpy arrays, or lists, tuples and dicts of them (rows can be taken)."""
    if isinstance(a, dict):
        return bool(a) and all(_all_numpy(v) for v in a.values())
    if isinstance(a, (list, tuple)):
        return bool(a) and all(_all_numpy(v) for v in a)
    return isinstance(a, np.ndarray)


class _ChunkBatches(keras.utils.PyDataset):
    """The held-out chunks' batches, in order: no batch spans two chunks.

    Each chunk is cut into batches of `evaluate`'s default size (32) as an
    `evaluate` of that chunk alone would cut it, and its floats are cast to
    ``floatx`` as Keras's array adapter casts them.
    """

    def __init__(self, arrays: tuple, chunks: list[np.ndarray], batch_size: int):
        super().__init__()

        def floatx(a: Any) -> Any:
            if a is None or a.dtype.kind != "f" or a.dtype == keras.config.floatx():
                return a
            return a.astype(keras.config.floatx())

        arrays = keras.tree.map_structure(floatx, arrays)
        self.batches: list[tuple] = []
        self.first: set[int] = set()
        self.last: set[int] = set()
        for index in chunks:
            self.first.add(len(self.batches))
            for start in range(0, index.size, batch_size):
                rows = index[start : start + batch_size]
                self.batches.append(
                    tuple(a if a is None else _take(a, rows) for a in arrays)
                )
            self.last.add(len(self.batches) - 1)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple:
        x, y, w = self.batches[i]
        return (x, y) if w is None else (x, y, w)


class _ChunkLosses(keras.callbacks.Callback):
    """Each chunk's loss within one `evaluate` of `_ChunkBatches`.

    The metrics are reset before each chunk's first batch and read after its
    last (one step per execution), as a separate `evaluate` of each chunk
    would: Keras's own arithmetic, in the same order, and the same loss.
    """

    def __init__(self, batches: _ChunkBatches):
        super().__init__()
        self._first = batches.first
        self._last = batches.last
        self.losses: list[float] = []

    def on_test_batch_begin(self, batch, logs=None):
        if batch and batch in self._first:
            # `model` syncs the JAX state first, then the next batch reads it.
            self.model.reset_metrics()

    def on_test_batch_end(self, batch, logs=None):
        if batch in self._last:
            model = self.model
            # What `evaluate` returns: the metrics' results, or a custom
            # `test_step`'s own logs when their keys differ.
            result = model.get_metrics_result()
            if not (isinstance(logs, dict) and set(logs) == set(result)):
                result = logs
            self.losses.append(float(keras.ops.convert_to_numpy(result["loss"])))


def _evaluate_chunks(
    model: Any, batches: _ChunkBatches, cache: dict | None
) -> np.ndarray:
    """The loss of each chunk of `batches`, from one `evaluate`.

    Run at one step per execution (for the chunks' boundaries); a model
    compiled with more gets a test function of its own for it, kept in
    `cache` across the race's candidates and put back after each.
    """
    chunk_losses = _ChunkLosses(batches)
    saved = None
    if int(getattr(model, "steps_per_execution", 1) or 1) != 1:
        saved = {
            name: vars(model).get(name, _MISSING)
            for name in ("steps_per_execution", "test_function")
        }
        set_attr(model, "steps_per_execution", 1)
        set_attr(model, "test_function", (cache or {}).get("test_function"))
    try:
        model.evaluate(batches, verbose=0, callbacks=[chunk_losses])
    finally:
        if saved is not None:
            if cache is not None:
                cache["test_function"] = model.test_function
            for name, value in saved.items():
                set_attr(model, name, value)
    return np.array(chunk_losses.losses, dtype="float64")


def _score(
    model: Any,
    validation_data: Any,
    steps: int | None = None,
    cache: dict | None = None,
) -> tuple[float, np.ndarray | None]:
    """The held-out loss, and the losses of its fixed chunks (arrays only).

    `validation_data` is a dataset or an ``(x, y, sample_weight)`` tuple
    (`check_validation_data`); `steps` bounds a dataset's batches. `cache`
    keeps what can serve the next call on the same data (the race scores
    each candidate on it): the chunks' batches, and the test function of a
    model with ``steps_per_execution > 1`` (`_evaluate_chunks`).
    """
    if not isinstance(validation_data, tuple):
        logs = model.evaluate(validation_data, steps=steps, verbose=0, return_dict=True)
        return float(logs["loss"]), None
    x, y, w = keras.utils.unpack_x_y_sample_weight(validation_data)
    n = 0
    if _all_numpy(x) and _all_numpy(y) and (w is None or _all_numpy(w)):
        n = num_samples(x)
    if n < _MIN_CHUNK * SCORE_CHUNKS:
        logs = model.evaluate(
            x, y, sample_weight=w, steps=steps, verbose=0, return_dict=True
        )
        return float(logs["loss"]), None
    # Chunks of whole groups of `shards` samples (a data-parallel
    # distribution splits every batch evenly across its devices).
    shards = batch_shards()
    if n % shards:
        shards = 1
    groups = np.array_split(np.arange(n // shards), SCORE_CHUNKS)
    chunks = np.split(np.arange(n), np.cumsum([shards * g.size for g in groups])[:-1])
    batches = None if cache is None else cache.get("batches")
    if batches is None:
        # One `evaluate` of the chunks' batches, not one per chunk (each
        # builds its own data pipeline, a tf.data one on TensorFlow).
        # Batches of `evaluate`'s size, made a multiple of the devices.
        size = max(shards, _EVALUATE_BATCH_SIZE - _EVALUATE_BATCH_SIZE % shards)
        batches = _ChunkBatches((x, y, w), chunks, size)
        if cache is not None:
            cache["batches"] = batches
    losses = _evaluate_chunks(model, batches, cache)
    sizes = np.array([index.size for index in chunks], dtype="float64")
    # The mean over samples, as one `evaluate` of the whole set gives it
    # (Keras's losses average ``weight * loss`` over the samples).
    return float(np.sum(losses * sizes) / np.sum(sizes)), losses


#: `evaluate`'s batch size for arrays when none is given.
_EVALUATE_BATCH_SIZE = 32


#: The race's default budget, in multiples of the range test's `num_steps`,
#: shared among the candidates: the whole search then costs at most
#: ``(1 + RACE_BUDGET) * num_steps`` training steps for any `num_candidates`
#: up to ``RACE_BUDGET * num_steps`` (each candidate races at least one step).
RACE_BUDGET = 2


def default_race_steps(num_steps: int, num_candidates: int) -> int:
    """Steps per candidate when `race_steps` is not given.

    The race shares ``RACE_BUDGET * num_steps`` steps evenly among the
    candidates: 50 steps each for the default 100-step range test and four
    candidates.

    >>> default_race_steps(100, 4), default_race_steps(40, 4), default_race_steps(10, 8)
    (50, 20, 2)
    """
    return max(1, (RACE_BUDGET * int(num_steps)) // int(num_candidates))


def find_best_learning_rate(
    model: keras.Model,
    data: Any,
    *,
    race: bool = True,
    race_steps: int | None = None,
    num_candidates: int = 4,
    holdout: float = 0.1,
    return_details: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> float | LRSearch:
    """The learning rate to train `model` on `data` with, in one call.

    1. An LR range test (`lr_range_test`, with `kwargs`).
    2. Up to `num_candidates` rates read off its curve
       (`keras_lr.suggest.candidates`: a half-decade ladder from half a
       decade above the loss minimum down, holding the curve rule's own
       suggestion), kept within the sweep's `start_lr` and `end_lr`.
    3. A short race: from the same starting state, the model trains for
       `race_steps` steps at each candidate, on the same batches, and each
       is scored by its loss, at the end of its race, on data it was not
       trained on: `validation_data` when given, else a random `holdout`
       fraction of array data (at most 2,048 samples, drawn with `seed`)
       kept out of the sweep and the race.
       Data that cannot be split (a dataset, a DataLoader) with no
       `validation_data` is scored by the mean training loss over the last
       third of the race. The model is restored after each candidate.
    4. The winner: a parabola in ``log(lr)`` through the best candidate and
       its neighbours, and its vertex (`keras_lr.suggest.race_winner`), so
       that the answer is not tied to the ladder's half-decade steps; when
       the top candidate wins, the geometric middle of it and the next
       one (a short race cannot see an instability that sets in later).
       Before that, the one-standard-error rule: when the candidate just
       below the best is worse by no more than one standard error of their
       paired differences (the held-out loss of 8 fixed chunks of at least
       16 samples, or the training loss of each of the race's last steps),
       the lower rate wins: the race cannot tell them apart, and a short
       race favours the rate that makes faster early progress.

    By default the race shares twice the range test's `num_steps` among the
    candidates (`default_race_steps`: 50 steps each for the default 100-step
    test and four candidates), so the whole search costs at most three
    times `num_steps` training steps, plus scoring the candidates' forward
    passes on the held-out data.

    With ``race=False`` it returns the curve rule's suggestion alone. The
    model is left bitwise as it was.

    Weighted data is searched on the loss that `fit` minimises: the range
    test and the race train with the sample or class weights, and the
    samples held out of array data are scored with their own weights
    (their classes' weights with `class_weight`). `validation_data` is
    scored as given, with its own weights only (as `fit` scores it).

    Args:
        model: a compiled Keras model.
        data: ``(x, y)`` or ``(x, y, sample_weight)`` arrays, a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, a torch
            `DataLoader` or another iterable of batches that can be
            iterated more than once. A generator (one-shot) is accepted
            only with ``race=False``.
        race: race the candidates (default) or use the curve alone.
        race_steps: steps per candidate, >= 1. Default:
            ``2 * num_steps // num_candidates`` (at least 1).
        num_candidates: candidates to race, >= 1.
        holdout: fraction of array data held out to score the race, in
            [0, 1); 0 scores the race on its training loss. Ignored when
            `validation_data` is given.
        return_details: return an `LRSearch` instead of the float.
        seed: seed of the race's batch order.
        **kwargs: passed to `lr_range_test` (`batch_size`, `start_lr`,
            `class_weight`, ...).

    Returns:
        The learning rate (or an `LRSearch`).

    Raises:
        TypeError: for a one-shot iterator (a generator) when racing.
        ValueError: on bad arguments (see `lr_range_test`), and when racing
            a model with stateful recurrent layers (``stateful=True``),
            whose fixed batch size the race's held-out split would break.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    >>> x = np.random.default_rng(0).normal(size=(512, 4)).astype("float32")
    >>> y = x @ np.ones((4, 1), dtype="float32")
    >>> search = find_best_learning_rate(
    ...     model, (x, y), num_steps=40, verbose=0, return_details=True
    ... )
    >>> 1e-3 < search.learning_rate < 1.0
    True
    >>> search.steps <= 3 * 40  # a 40-step sweep, 4 candidates x 20 steps
    True
    """
    _check_compiled(model)
    race = _validate.check_bool("race", race)
    return_details = _validate.check_bool("return_details", return_details)
    seed = _validate.check_optional_int("seed", seed, minimum=0)
    holdout = _validate.check_in_interval(
        "holdout", _validate.check_real("holdout", holdout), 0.0, 1.0
    )
    num_candidates = _validate.check_int("num_candidates", num_candidates, minimum=1)
    if race_steps is not None:
        race_steps = _validate.check_int("race_steps", race_steps, minimum=1)
    _check_not_stateful(model, race)
    x, y, sample_weight = split_data(data)
    if sample_weight is not None and kwargs.get("sample_weight") is not None:
        raise ValueError(
            "Sample weights were given twice: as the third item of `data` and "
            "as `sample_weight`. Pass them once."
        )
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
    check_targets(model, x, y)
    if kwargs.get("sample_weight") is not None:
        # Checked before the held-out part is cut from the data.
        kwargs["sample_weight"] = check_sample_weight(x, y, kwargs["sample_weight"])
    weights = _fit_weights(kwargs.get("sample_weight"), kwargs.get("class_weight"))
    if race and is_one_shot(x):
        raise TypeError(
            "Argument `data` must be iterable more than once: the range test "
            "and then each candidate of the race start from its first batch, "
            "and a generator or iterator is used up by the first pass. Pass "
            "arrays `(x, y)`, a tf.data.Dataset, a keras.utils.PyDataset, a "
            "torch DataLoader or a list of batches (or `race=False`). "
            f"Received: data of type {type(x).__name__}"
        )
    validation_steps = kwargs.get("validation_steps")
    scoring_data = check_validation_data(
        kwargs.get("validation_data"), validation_steps
    )
    if race and scoring_data is None:
        x, y, weights, scoring_data = _split_holdout(x, y, weights, holdout, seed)
        if "sample_weight" in weights:
            kwargs["sample_weight"] = weights["sample_weight"]
    result = lr_range_test(model, x, y, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RangeTestWarning)
        curve_lr = result.suggestion("default", warn=False)
    for finding in result.diagnostics():
        warnings.warn(f"LR range test: {finding}.", RangeTestWarning, stacklevel=2)
    steps = len(result)
    if not race:
        search = LRSearch(curve_lr, result, steps=steps)
        return search if return_details else curve_lr
    if race_steps is None:
        race_steps = default_race_steps(
            result.params.get("num_steps", 100), num_candidates
        )
    lrs = suggest.candidates(result.lrs, result.losses, num=num_candidates)
    # Not above the sweep's `end_lr` (a sweep that never diverged says
    # nothing of stability there), nor below its `start_lr`.
    low = result.params.get("start_lr", result.lrs[0])
    high = result.params.get("end_lr", result.lrs[-1])
    lrs = sorted({min(max(lr, low), high) for lr in lrs})
    scores, samples = _race(
        model,
        x,
        y,
        kwargs.get("batch_size"),
        lrs,
        race_steps,
        scoring_data,
        seed,
        validation_steps,
        weights,
    )
    if np.any(np.isfinite(scores)):
        best = suggest.race_winner(lrs, scores, samples)
    else:
        best = curve_lr
    search = LRSearch(
        float(best), result, list(lrs), scores, steps + race_steps * len(lrs)
    )
    return search if return_details else float(best)
