"""Turns whatever `model.fit` takes into exactly `num_steps` batches, cycling."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import keras
import numpy as np

_ARRAY_TYPES = (np.ndarray, list)


def _is_array_like(x: Any) -> bool:
    """Arrays, tensors, and lists/tuples/dicts of them (fit's in-memory data)."""
    if isinstance(x, dict):
        return bool(x) and all(_is_array_like(v) for v in x.values())
    if is_batch_list(x):
        return False  # an iterable of batches, not a multi-input list
    if isinstance(x, (list, tuple)):
        return bool(x) and all(_is_array_like(v) for v in x)
    if isinstance(x, np.ndarray):
        return True
    if keras.ops.is_tensor(x):
        return True
    mod = type(x).__module__
    return mod.startswith("pandas") or hasattr(x, "__array__")


def num_samples(x: Any) -> int:
    """Number of samples in in-memory data (the first leaf's length)."""
    if isinstance(x, dict):
        return num_samples(next(iter(x.values())))
    if isinstance(x, (list, tuple)):
        return num_samples(x[0])
    return int(np.shape(x)[0])


def batch_shards() -> int:
    """Parts each batch is split into by the current `keras.distribution`.

    Under a `keras.distribution.DataParallel` (or `ModelParallel`) on JAX,
    every batch's size must be a multiple of the devices along the batch
    axis of the mesh: the sizes of the slices keras_lr cuts from array data
    are multiples of this. 1 without a distribution.

    Example:

    >>> batch_shards()
    1
    """
    distribution = keras.distribution.distribution()
    mesh = getattr(distribution, "device_mesh", None)
    axis = getattr(distribution, "batch_dim_name", None)
    if mesh is None or axis not in mesh.axis_names:
        return 1
    return int(mesh.shape[list(mesh.axis_names).index(axis)])


def _is_tf_dataset(x: Any) -> bool:
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "repeat")


class _CyclingPyDataset(keras.utils.PyDataset):
    """A `PyDataset` of `length` batches that cycles over another one."""

    def __init__(self, base: keras.utils.PyDataset, length: int):
        super().__init__(
            workers=getattr(base, "workers", 1),
            use_multiprocessing=getattr(base, "use_multiprocessing", False),
            max_queue_size=getattr(base, "max_queue_size", 10),
        )
        self.base = base
        self.length = length
        # `num_batches` (`len` by default); None for an infinite one.
        self.base_length = base.num_batches

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if self.base_length is None:
            return self.base[index]
        return self.base[index % self.base_length]

    def on_epoch_end(self):
        self.base.on_epoch_end()


def _as_batch(batch: Any) -> Any:
    """A batch as Keras's generator adapter takes it.

    A torch `DataLoader` collates ``(x, y)`` samples into a list
    ``[x, y]``, which `fit` takes from a `DataLoader` but not from a Python
    generator (the form the data is cycled in here): it becomes a tuple.
    """
    return tuple(batch) if isinstance(batch, list) else batch


def _cycle(source: Iterable) -> Iterator:
    """Yields from `source` forever; caches a one-shot iterator's batches."""
    if iter(source) is source:
        cache = []
        for batch in source:
            cache.append(_as_batch(batch))
            yield cache[-1]
        if not cache:
            return
        while True:
            yield from cache
    else:
        while True:
            empty = True
            for batch in source:
                empty = False
                yield _as_batch(batch)
            if empty:
                return


#: A generator's batches come in its own order (`fit` would warn that its
#: default ``shuffle=True`` is ignored).
_NO_SHUFFLE = {"shuffle": False}


def fit_arguments(
    x: Any,
    y: Any,
    batch_size: int | None,
    num_steps: int,
    sample_weight: Any = None,
    class_weight: dict | None = None,
) -> dict:
    """Keyword arguments for `model.fit` that run `num_steps` steps over `x`.

    In-memory data runs whole, reshuffled epochs until the callback stops
    the sweep; a `tf.data.Dataset` is repeated; a `PyDataset` is indexed
    modulo its length; any other iterable (a generator, a torch
    `DataLoader`) is re-iterated, or cached and replayed if it can only be
    iterated once.

    A list of ``(x, y)`` or ``(x, y, sample_weight)`` tuples is a list of
    batches (`model.fit` itself would read it as the inputs of a
    multi-input model).

    Per-sample weights go with array data only (`sample_weight`, see
    `check_sample_weight`), as in `fit`; a dataset yields its own
    ``(x, y, sample_weight)`` batches. A `class_weight` table (checked by
    the caller) goes with arrays, a `tf.data.Dataset` or a `PyDataset`.

    Raises:
        TypeError: for `x` that `fit` does not take, or a `sample_weight`
            that is not numbers.
        ValueError: for empty data, `y` given with a dataset, a
            `sample_weight` that `check_sample_weight` refuses, or a
            `class_weight` with data that `fit` takes it with.
    """
    kwargs = _fit_arguments(
        x, y, batch_size, num_steps, check_sample_weight(x, y, sample_weight)
    )
    if class_weight is not None:
        if not (
            _is_array_like(x)
            or _is_tf_dataset(x)
            or isinstance(x, keras.utils.PyDataset)
        ):
            raise ValueError(
                "Argument `class_weight` is taken with arrays, a "
                "tf.data.Dataset or a keras.utils.PyDataset, as in `fit`. A "
                "generator, a torch DataLoader or a list of batches must yield "
                "`(x, y, sample_weight)` batches with each sample's class "
                f"weight. Received: x of type {type(x).__name__}"
            )
        kwargs["class_weight"] = class_weight
    return kwargs


def _fit_arguments(
    x: Any, y: Any, batch_size: int | None, num_steps: int, sample_weight: Any
) -> dict:
    """`fit_arguments` less the class weights; `sample_weight` is checked."""
    if y is None and is_batch_list(x):
        return {
            "x": _cycle(x),
            "steps_per_epoch": num_steps,
            "epochs": 1,
            **_NO_SHUFFLE,
        }
    if _is_array_like(x):
        n = num_samples(x)
        if n == 0:
            raise ValueError(
                "Argument `x` is empty: the range test needs at least one batch."
            )
        batch_size = batch_size or 32
        per_epoch = math.ceil(n / batch_size)
        kwargs = {
            "x": x,
            "y": y,
            "batch_size": batch_size,
            "epochs": math.ceil(num_steps / per_epoch),
            "shuffle": True,
        }
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        return kwargs
    if isinstance(x, (str, bytes)) or not (
        _is_tf_dataset(x)
        or isinstance(x, keras.utils.PyDataset)
        or isinstance(x, Iterable)
    ):
        raise TypeError(
            "Argument `x` must be what `model.fit` takes: arrays, a dict or "
            "list of arrays, a tf.data.Dataset, a keras.utils.PyDataset or an "
            "iterable of batches (a file path is not read: load the data "
            f"first). Received: x={_short_repr(x)} (of type {type(x).__name__})"
        )
    if _is_nested_numbers(x):
        raise TypeError(
            "Argument `x` is a Python list of numbers, which `model.fit` does "
            "not take: pass an array, `np.asarray(x)` (and the same for `y`). "
            f"Received: x={_short_repr(x)} (of type {type(x).__name__})"
        )
    if y is not None:
        raise ValueError(
            "Argument `y` must be None when `x` is a dataset, a generator or a "
            f"PyDataset (they yield their own targets). Received: y={type(y).__name__}"
        )
    if _is_tf_dataset(x):
        return {"x": x.repeat(), "steps_per_epoch": num_steps, "epochs": 1}
    if isinstance(x, keras.utils.PyDataset):
        if x.num_batches == 0:
            raise ValueError(
                "The PyDataset passed as `x` is empty (its `num_batches` is 0)."
            )
        return {"x": _CyclingPyDataset(x, num_steps), "epochs": 1}
    return {"x": _cycle(x), "steps_per_epoch": num_steps, "epochs": 1, **_NO_SHUFFLE}


def check_sample_weight(x: Any, y: Any, sample_weight: Any) -> Any:
    """`fit`'s `sample_weight` for array data `x`, checked; lists become arrays.

    One weight per sample of `x`: an array (or a list of numbers), or, for
    a model with several outputs, a dict or list of such arrays with the
    structure of `y` (None for an output left unweighted).

    Raises:
        TypeError: for weights that are not numbers.
        ValueError: for `x` that is not arrays (a dataset yields its own
            weights), weights of another length than `x`, or per-output
            weights that do not match the outputs of `y`.

    Example:

    >>> check_sample_weight(np.zeros((3, 2)), np.zeros(3), [1, 2, 3]).dtype
    dtype('float32')
    """
    if sample_weight is None:
        return None
    if not _is_array_like(x):
        raise ValueError(
            "Argument `sample_weight` is taken with array data only, as in "
            "`fit`: a dataset, a generator or a PyDataset yields its own "
            "weights as `(x, y, sample_weight)` batches. Received: x of type "
            f"{type(x).__name__}"
        )
    n = num_samples(x)
    if isinstance(sample_weight, dict):
        if not isinstance(y, dict) or not set(sample_weight) <= set(y):
            raise ValueError(
                "Argument `sample_weight` as a dict must weigh outputs of the "
                "targets `y` (a dict of the same keys, as in `fit`). Received: "
                f"sample_weight keys {sorted(map(str, sample_weight))}, targets "
                + (f"keys {sorted(map(str, y))}" if isinstance(y, dict) else
                   f"of type {type(y).__name__}")
            )  # fmt: skip
        return {k: _one_weight_per_sample(w, n) for k, w in sample_weight.items()}
    per_output = (
        isinstance(y, (list, tuple))
        and isinstance(sample_weight, (list, tuple))
        and all(w is None or _is_array_like(w) for w in sample_weight)
    )
    if per_output:
        if len(sample_weight) != len(y):
            raise ValueError(
                "Argument `sample_weight` as a list must hold one array (or "
                f"None) per output of `y`. Received: {len(sample_weight)} for "
                f"{len(y)} outputs"
            )
        return type(sample_weight)(_one_weight_per_sample(w, n) for w in sample_weight)
    return _one_weight_per_sample(sample_weight, n)


def _one_weight_per_sample(weights: Any, n: int) -> Any:
    """An array (or None) of `n` weights; a list of numbers is converted."""
    if weights is None:
        return None
    if isinstance(weights, (list, tuple)):
        try:
            weights = np.asarray(weights, dtype=keras.config.floatx())
        except (TypeError, ValueError):
            pass  # refused below
    if (
        not _is_array_like(weights)
        or isinstance(weights, (list, tuple, dict))
        or np.ndim(weights) == 0
    ):
        raise TypeError(
            "Argument `sample_weight` must be an array of one weight per "
            f"sample. Received: sample_weight={_short_repr(weights)}"
        )
    if num_samples(weights) != n:
        raise ValueError(
            "Argument `sample_weight` must have one weight per sample of "
            f"`x`. Received: {num_samples(weights)} weights for {n} samples"
        )
    return weights


def _is_nested_numbers(x: Any) -> bool:
    """A (nested) Python list or tuple of numbers, judged by its first leaf.

    >>> _is_nested_numbers([[0.5, 1.0], [2.0, 3.0]]), _is_nested_numbers([])
    (True, False)
    """
    if not isinstance(x, (list, tuple)) or not x:
        return False
    first = x[0]
    if isinstance(first, (list, tuple)):
        return _is_nested_numbers(first)
    return isinstance(first, (int, float, complex, np.number)) and not isinstance(
        first, bool
    )


def is_batch_list(x: Any) -> bool:
    """A list of ``(x, y)`` or ``(x, y, sample_weight)`` batches."""
    return (
        isinstance(x, list)
        and bool(x)
        and all(
            isinstance(b, tuple) and len(b) in (2, 3) and _is_array_like(b[0])
            for b in x
        )
    )


def check_cardinality(x: Any, y: Any) -> None:
    """In-memory `x` and `y` hold one row per sample, the same number.

    `fit` checks it too, but a holdout cut by the length of `x` comes first
    (sample weights are checked against `x` by `check_sample_weight`).

    Example:

    >>> check_cardinality(np.zeros((4, 2)), np.zeros(3))
    Traceback (most recent call last):
    ...
    ValueError: Arguments `x` and `y` must hold the same number of samples. Received: x with 4 samples, y with 3 samples
    """
    sizes = {}
    for name, part in (("x", x), ("y", y)):
        leaves = [part] if hasattr(part, "iloc") else keras.tree.flatten(part)
        sizes[name] = sorted({int(np.shape(leaf)[0]) for leaf in leaves})
    if len(set(sizes["x"]) | set(sizes["y"])) > 1:
        received = ", ".join(
            f"{name} with {' and '.join(map(str, found))} samples"
            for name, found in sizes.items()
        )
        raise ValueError(
            "Arguments `x` and `y` must hold the same number of samples. "
            f"Received: {received}"
        )


def check_targets(model: Any, x: Any, y: Any) -> None:
    """A model compiled with a loss needs targets next to in-memory inputs.

    In-memory inputs are arrays, tensors, and tuples, lists or dicts of them
    (not a dataset, generator or list of batches, which carry their
    targets). A tuple of 2 or 3 arrays with no `y` is most likely
    ``(x, y[, sample_weight])`` given where `lr_range_test` takes ``x, y``.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x, y = np.zeros((4, 2)), np.zeros((4, 1))
    >>> check_targets(model, (x, y), None)
    Traceback (most recent call last):
    ...
    ValueError: The model was compiled with a loss, but the data holds inputs and no targets: ...
    """
    if (
        y is not None
        or getattr(model, "loss", None) is None
        or _computes_its_own_loss(model)
    ):
        return
    if isinstance(x, np.ndarray) or keras.ops.is_tensor(x):
        raise ValueError(
            "The model was compiled with a loss, but the data holds inputs and "
            "no targets: pass arrays as `(x, y)` (to `find_best_learning_rate`) "
            "or `x, y` (to `lr_range_test`). Received: an array of shape "
            f"{tuple(np.shape(x))} and no `y`."
        )
    if not (isinstance(x, (tuple, list, dict)) and _is_array_like(x)):
        return
    leaves = list(x.values()) if isinstance(x, dict) else list(x)
    shapes = ", ".join(str(tuple(np.shape(leaf))) for leaf in leaves)
    hint = ""
    if isinstance(x, tuple) and len(x) in (2, 3):
        hint = (
            " A tuple `(x, y)` is taken as the data by "
            "`find_best_learning_rate(model, (x, y))`; `lr_range_test` takes "
            "them apart: `lr_range_test(model, x, y)`."
        )
    raise ValueError(
        "The model was compiled with a loss, but the data holds inputs and no "
        f"targets: `x` is a {type(x).__name__} of {len(leaves)} arrays (shapes "
        f"{shapes}), read as the model's inputs, and `y` is None.{hint}"
    )


def _computes_its_own_loss(model: Any) -> bool:
    """Whether `model` overrides `train_step` or `compute_loss` (it may then
    make its targets from the inputs)."""
    for name in ("train_step", "compute_loss"):
        method = getattr(type(model), name, None)
        module = getattr(method, "__module__", "") or ""
        if method is not None and not module.startswith("keras."):
            return True
    return False


def _short_repr(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def is_one_shot(x: Any) -> bool:
    """Whether `x` is an iterator that can be iterated only once (a generator).

    Example:

    >>> is_one_shot(iter([1, 2])), is_one_shot([1, 2])
    (True, False)
    """
    return isinstance(x, Iterator)


def first_batch(fit_kwargs: dict) -> Any:
    """The first batch `model.fit(**fit_kwargs)` will see, without using it up.

    A generator in ``fit_kwargs["x"]`` is replaced by one that yields the
    batch taken from it first.

    Args:
        fit_kwargs: what `fit_arguments` returned (changed in place).

    Returns:
        The batch (``x``, ``(x, y)`` or ``(x, y, sample_weight)``), or None
        when the data yields none.
    """
    x = fit_kwargs["x"]
    if "batch_size" in fit_kwargs:
        n = min(num_samples(x), fit_kwargs["batch_size"])
        index = np.arange(n)
        batch_x = _take(x, index)
        y = fit_kwargs.get("y")
        if y is None:
            return batch_x
        w = fit_kwargs.get("sample_weight")
        if w is None:
            return batch_x, _take(y, index)
        return batch_x, _take(y, index), _take(w, index)
    if isinstance(x, keras.utils.PyDataset):
        return x[0]
    if _is_tf_dataset(x):
        for batch in x.take(1):
            return batch
        return None
    try:
        batch = next(x)
    except StopIteration:
        return None
    fit_kwargs["x"] = _prepend(batch, x)
    return batch


def _prepend(first: Any, rest: Iterator) -> Iterator:
    """A generator (which `fit` takes, unlike an `itertools.chain`)."""
    yield first
    yield from rest


def _take(a: Any, index: np.ndarray) -> Any:
    """Rows `index` of an array, or of every array in a list, tuple or dict."""
    if a is None:
        return None  # an output without weights
    if isinstance(a, dict):
        return {k: _take(v, index) for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return type(a)(_take(v, index) for v in a)
    return np.asarray(a)[index]


def check_validation_data(data: Any, validation_steps: int | None) -> Any:
    """`validation_data` in the form the range test evaluates it.

    Like `fit`, takes ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight)``
    as a tuple or a list (returned as a 3-tuple, the weights None when
    absent), or a dataset. The loss is measured about ten times, so the
    data must be iterable more than once, and an infinite
    `tf.data.Dataset` needs `validation_steps`.

    Raises:
        TypeError: for a generator or another one-shot iterator.
        ValueError: for a tuple or list of other than 2 or 3 items, and for
            an infinite dataset without `validation_steps`.

    Example:

    >>> check_validation_data([np.zeros(2), np.ones(2)], None)[2] is None
    True
    """
    if data is None:
        return None
    if is_batch_list(data):
        raise ValueError(
            "Argument `validation_data` cannot be a list of batches (`evaluate` "
            "would read it as arrays): pass `(x_val, y_val)` arrays, a "
            "tf.data.Dataset or a keras.utils.PyDataset. Received: a list of "
            f"{len(data)} batches"
        )
    if isinstance(data, (list, tuple)) and len(data) in (2, 3):
        return keras.utils.unpack_x_y_sample_weight(tuple(data))
    if isinstance(data, (list, tuple)):
        raise ValueError(
            "Argument `validation_data` must be `(x_val, y_val)` or `(x_val, "
            "y_val, sample_weight)` (a validation loss needs targets), a "
            "tf.data.Dataset or a keras.utils.PyDataset. Received: a "
            f"{type(data).__name__} of {len(data)} item(s)"
        )
    if is_one_shot(data):
        raise TypeError(
            "Argument `validation_data` must be iterable more than once: its "
            "loss is measured at about ten points of the sweep, and a generator "
            "is used up by the first. Pass `(x_val, y_val)` arrays, a "
            "tf.data.Dataset or a keras.utils.PyDataset. "
            f"Received: validation_data of type {type(data).__name__}"
        )
    if validation_steps is None and (
        (_is_tf_dataset(data) and int(data.cardinality()) == _INFINITE)
        or (isinstance(data, keras.utils.PyDataset) and data.num_batches is None)
    ):
        raise ValueError(
            "Argument `validation_steps` must be given with an infinite "
            "`validation_data` dataset (one that repeats): each measurement "
            "would never end. Received: validation_steps=None"
        )
    return data


#: `tf.data.INFINITE_CARDINALITY`.
_INFINITE = -1


def has_no_batch(x: Any, fit_kwargs: dict) -> bool:
    """Whether data `x` (turned into `fit_kwargs` by `fit_arguments`) is empty.

    Arrays and a `PyDataset` were checked by `fit_arguments`. A
    `tf.data.Dataset` of unknown cardinality (a ``filter``) is iterated for
    its first batch; a generator gives its first batch back (see
    `first_batch`).
    """
    if "batch_size" in fit_kwargs or isinstance(x, keras.utils.PyDataset):
        return False
    if _is_tf_dataset(x):
        cardinality = int(x.cardinality())
        if cardinality != _UNKNOWN:
            return cardinality == 0
        for _ in x.take(1):
            return False
        return True
    return first_batch(fit_kwargs) is None


#: `tf.data.UNKNOWN_CARDINALITY`.
_UNKNOWN = -2


def split_data(data: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` from `find_best_learning_rate`'s `data`.

    Arrays come as ``(x, y)`` or ``(x, y, sample_weight)``; anything else
    (a dataset, a loader) is `x`, with its own targets.

    Example:

    >>> x, y, w = split_data((np.zeros((4, 2)), np.ones(4), np.ones(4)))
    >>> x.shape, w.shape
    ((4, 2), (4,))
    """
    if isinstance(data, tuple) and len(data) == 2 and _is_array_like(data[0]):
        return data[0], data[1], None
    if isinstance(data, tuple) and len(data) == 1:
        return data[0], None, None
    if (
        isinstance(data, tuple)
        and len(data) == 3
        and _is_array_like(data[0])
        and (_is_array_like(data[1]) or data[1] is None)
    ):
        return data  # the weights are checked by `check_sample_weight`
    if (
        isinstance(data, tuple)
        and len(data) > 3
        and _is_array_like(data[0])
        and all(d is None or _is_array_like(d) for d in data)
    ):
        # Keras's own unpacking takes no more than three either.
        raise ValueError(
            "Argument `data` must be `(x, y)` or `(x, y, sample_weight)` "
            "arrays (a model with several inputs takes them as one list or "
            "dict: `([x1, x2], y)`), or a dataset or iterable of batches. "
            f"Received: a tuple of {len(data)} items"
        )
    return data, None, None


def class_weights_as_sample_weights(y: Any, class_weight: dict) -> np.ndarray:
    """The weight of each sample's class, as `fit`'s `class_weight` gives it.

    Integer labels (shape ``(n,)`` or ``(n, 1)``) index `class_weight`;
    one-hot or probability targets are read by their largest entry. A class
    missing from `class_weight` weighs 1.

    Raises:
        ValueError: for targets that are not one array (a multi-output dict).

    Example:

    >>> class_weights_as_sample_weights(np.array([0, 1, 1]), {0: 1.0, 1: 3.0})
    array([1., 3., 3.])
    >>> class_weights_as_sample_weights([[0, 1], [1, 0]], {1: 2.0})
    Traceback (most recent call last):
    ...
    ValueError: Argument `class_weight` needs the targets as one array (one output). Received: targets of type list
    >>> class_weights_as_sample_weights([2, 0], {2: 0.5})
    array([0.5, 1. ])
    """
    if not isinstance(y, np.ndarray) and not keras.ops.is_tensor(y):
        # A dict, or a list of arrays (outputs); a list of labels is one.
        if isinstance(y, dict) or (
            isinstance(y, (list, tuple)) and any(np.ndim(v) > 0 for v in y)
        ):
            raise ValueError(
                "Argument `class_weight` needs the targets as one array (one "
                f"output). Received: targets of type {type(y).__name__}"
            )
    labels = np.asarray(y)
    if labels.ndim > 1 and labels.shape[-1] > 1:
        labels = np.argmax(labels, axis=-1)
    labels = np.rint(labels.reshape(len(labels), -1)[:, 0]).astype("int64")
    table = {int(k): float(v) for k, v in class_weight.items()}
    return np.array([table.get(int(c), 1.0) for c in labels], dtype="float64")
