"""Out-of-memory handling: a batch that does not fit fails its trial only.

A trial whose batch size runs out of device memory raises KerasTuner's
`FailedTrialError`, so the oracle marks it failed and the search goes on.
Where the device reports its free memory (a GPU under JAX or PyTorch), an
estimate of the activations of one batch rules a batch size out before any
training. TensorFlow reports only the memory in use and its peak, not the
device's limit: there the out-of-memory error itself marks the trial.
"""

from __future__ import annotations

import gc

import keras

_OOM_MARKERS = (
    "resourceexhausted",
    "resource_exhausted",
    "out of memory",
    "oom when allocating",
    "failed to allocate",
)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device (or host) out-of-memory error.

    Example:

    >>> is_out_of_memory(MemoryError())
    True
    >>> is_out_of_memory(ValueError("shapes do not match"))
    False
    """
    if isinstance(error, MemoryError):
        return True
    text = f"{type(error).__name__} {error}".lower()
    return any(marker in text for marker in _OOM_MARKERS)


def activation_bytes(model: keras.Model, batch_size: int) -> int:
    """A lower bound on the bytes of one training step's activations.

    Sums the output sizes of every layer for `batch_size` samples, times 2
    (forward value and its gradient), in the layer's compute dtype.
    """
    total = 0
    for layer in model.layers:
        try:
            shapes = keras.tree.flatten(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        size = 1
        for dim in shapes[1:]:
            size *= int(dim) if dim is not None else 1
        itemsize = 2 if "16" in str(layer.compute_dtype) else 4
        total += size * itemsize
    return 2 * total * int(batch_size)


def device_memory_bytes() -> int | None:
    """Free memory of the first GPU, where the backend reports it, or None.

    JAX: the device's ``bytes_limit`` less ``bytes_in_use``
    (``Device.memory_stats()``); PyTorch: ``torch.cuda.mem_get_info()``'s
    free bytes. TensorFlow's ``get_memory_info`` has no limit: None.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            return None
        try:
            stats = gpus[0].memory_stats()
        except (RuntimeError, NotImplementedError):
            return None
        if not stats or not stats.get("bytes_limit"):
            return None
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        try:
            free, _total = torch.cuda.mem_get_info()
        except RuntimeError:
            return None
        return int(free)
    return None


def failed_trial(message: str) -> Exception:
    from keras_tuner.errors import FailedTrialError

    return FailedTrialError(message)


def check_fits(model: keras.Model, per_replica_batch: int) -> None:
    """Raises `FailedTrialError` when the batch clearly cannot fit in memory."""
    free = device_memory_bytes()
    if free is None:
        return
    params = sum(
        int(v.numpy().nbytes) if hasattr(v, "numpy") else 0 for v in model.weights
    )
    need = activation_bytes(model, per_replica_batch) + 4 * params
    if need > free:
        raise failed_trial(
            f"Batch of {per_replica_batch} per replica needs at least "
            f"{need / 2**20:.0f} MiB of device memory; {free / 2**20:.0f} MiB "
            "are free. The trial is marked infeasible."
        )


def release_memory() -> None:
    """Frees what a finished trial held (graphs, models, device buffers)."""
    keras.backend.clear_session()
    gc.collect()
