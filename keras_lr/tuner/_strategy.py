"""Choosing the `tf.distribute` strategy for a search.

The only module of keras_lr that imports TensorFlow, and only inside
functions, so that ``import keras_lr`` works on JAX or PyTorch without it.
"""

from __future__ import annotations

from typing import Any

import keras


def default_strategy() -> Any:
    """The strategy a search should run under.

    The strategy in scope if there is one; else `MirroredStrategy` over all
    GPUs when there are several, `OneDeviceStrategy` on a single GPU, and the
    default strategy otherwise. On JAX and PyTorch there is no
    `tf.distribute`: None (see `data_parallel_distribution` for JAX).

    Example:

    >>> strategy = default_strategy()
    >>> num_replicas(strategy) >= 1
    True
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def check_strategy(strategy: Any) -> Any:
    """Checks a ``distribution_strategy`` argument and returns it.

    Accepted: "auto", None, or a `tf.distribute.Strategy` (any object with
    ``num_replicas_in_sync``).

    Raises:
        TypeError: for anything else, such as the string "mirrored".

    Example:

    >>> check_strategy("mirrored")
    Traceback (most recent call last):
    ...
    TypeError: Argument `distribution_strategy` must be "auto", None or a tf.distribute.Strategy instance, such as tf.distribute.MirroredStrategy(). Received: distribution_strategy='mirrored' (of type str)
    """
    if strategy is None or strategy == "auto":
        return strategy
    if isinstance(strategy, (str, type)) or not hasattr(
        strategy, "num_replicas_in_sync"
    ):
        raise TypeError(
            'Argument `distribution_strategy` must be "auto", None or a '
            "tf.distribute.Strategy instance, such as "
            "tf.distribute.MirroredStrategy(). Received: "
            f"distribution_strategy={strategy!r} (of type {type(strategy).__name__})"
        )
    return strategy


def num_replicas(strategy: Any, distribution: Any = None) -> int:
    """Replicas that share one global batch under `strategy` (1 for None),
    or under the JAX `distribution` (that set, when None)."""
    if strategy is None:
        distribution = distribution or _jax_distribution()
        if distribution is not None:
            return int(distribution.device_mesh.shape[0])
        return 1
    return int(strategy.num_replicas_in_sync)


def _jax_distribution() -> Any:
    if keras.backend.backend() != "jax":
        return None
    return keras.distribution.distribution()


def jax_distribution(strategy: Any) -> Any:
    """The `keras.distribution` a search's trials run under (JAX only).

    The one set with `keras.distribution.set_distribution`, else, for
    ``strategy="auto"``, `data_parallel_distribution()` (None on one
    device). None on other backends.
    """
    distribution = _jax_distribution()
    if distribution is None and isinstance(strategy, str):
        distribution = data_parallel_distribution()
    return distribution


def data_parallel_distribution() -> Any:
    """On JAX with several devices, a `keras.distribution.DataParallel`.

    Returns None on other backends or on a single device.

    Example:

    >>> data_parallel_distribution() is None  # TensorFlow, or one device
    True
    """
    if keras.backend.backend() != "jax":
        return None
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return None
    return keras.distribution.DataParallel(devices=devices)


class _NullScope:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def scope(strategy: Any, distribution: Any = None):
    """`strategy.scope()`, or nothing when None or already in scope; on JAX,
    `distribution.scope()` (a `keras.distribution`) when given."""
    if distribution is not None:
        return distribution.scope()
    if strategy is None:
        return _NullScope()
    import tensorflow as tf

    if tf.distribute.has_strategy() and tf.distribute.get_strategy() is strategy:
        return _NullScope()
    return strategy.scope()
