"""A loss tracker that keeps the last steps' own losses in a device ring.

`keras_lr.range_test._recorder.StepLossRecorder` keeps the first
``capacity`` per-step losses, which suits a sweep of known length. A whole
training run needs a buffer that the host empties every few steps: this
subclass writes step ``t``'s loss at index ``t % capacity`` and counts steps,
so that the host, reading every ``k <= capacity`` steps, gets every loss
exactly once without writing anything back to the device.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lr.range_test._recorder import StepLossRecorder


class RingLossRecorder(StepLossRecorder):
    """`StepLossRecorder` with a ring buffer: step ``t`` goes to ``t % capacity``.

    Example:

    >>> rec = RingLossRecorder(capacity=3)
    >>> for value in (1.0, 2.0, 3.0, 4.0):
    ...     rec.update_state(value, sample_weight=1)
    >>> values, total, lost = rec.read_since(1)
    >>> values.tolist(), total, lost
    ([2.0, 3.0, 4.0], 4, 0)
    """

    def __init__(self, capacity: int, name: str = "loss", *, grad_norms: bool = False):
        super().__init__(capacity, name=name)
        #: Each step's global gradient norm, at the same index as its loss
        #: (`keras_lr.callbacks._grad_norm` writes it); -1 where the
        #: optimizer skipped the step (a loss scaler's overflow).
        self.grad_buffer = None
        if grad_norms:
            self.grad_buffer = self._step_buffer("step_grad_norms")
        # A gradient norm computed (JAX) before this step's loss is recorded,
        # in the same trace of the step: written by `update_state`.
        self.pending_grad_norm = None
        self.last_grad_norms = None

    def update_state(self, values, sample_weight=None):
        keras.metrics.Mean.update_state(self, values, sample_weight=sample_weight)
        if not self.writes:
            return
        loss = ops.mean(ops.convert_to_tensor(values))
        # `.value`: JAX no longer converts a variable object implicitly.
        steps = ops.cast(self.steps.value, "int32")
        slot = ops.mod(steps, self.capacity)
        self._write(self.buffer, loss, slot)
        pending, self.pending_grad_norm = self.pending_grad_norm, None
        if self.grad_buffer is not None:
            # No norm (yet): a step that updates nothing (no trainable
            # weights, a custom step without the optimizer) reads as skipped;
            # on TensorFlow and PyTorch `record_grad_norm` overwrites it.
            self._write(self.grad_buffer, -1.0 if pending is None else pending, slot)
        self.steps.assign(ops.add(steps, 1))

    def _write(self, buffer, value, slot) -> None:
        """``buffer[slot] = value`` on the device (a float32 ring)."""
        index = ops.arange(self.capacity, dtype="int32")
        value = ops.cast(value, "float32")
        buffer.assign(ops.where(ops.equal(index, slot), value, buffer.value))

    def record_grad_norm(self, norm) -> None:
        """Writes the gradient norm of the step whose loss was just recorded.

        TensorFlow and PyTorch record the loss before they compute the
        gradients, so the norm goes to the slot of the last recorded step.
        """
        if self.grad_buffer is None or not self.writes:
            return
        steps = ops.cast(self.steps.value, "int32")
        self._write(self.grad_buffer, norm, ops.mod(ops.add(steps, -1), self.capacity))

    def reset_state(self):
        # `fit` resets metrics every epoch: keep the ring, reset the mean.
        for variable in (self.total, self.count):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def read_since(
        self, consumed: int, *, values: Any = None
    ) -> tuple[np.ndarray, int, int]:
        """The losses of steps ``consumed, ..., total - 1`` (a host read).

        Args:
            consumed: steps already read.
            values: optional host arrays of `ring_variables` to use instead
                of reading the variables (the JAX trainer keeps them
                elsewhere mid-epoch).

        Returns:
            ``(losses, total, lost)``: the losses in step order, the number of
            steps recorded so far, and how many steps were overwritten before
            they could be read (0 when reads come every ``capacity`` steps or
            more often). The same steps' gradient norms, when recorded, are
            left in ``last_grad_norms``.
        """
        if values is None:
            values = [keras.ops.convert_to_numpy(v.value) for v in self.ring_variables]
        buffer, steps = values[0], values[1]
        buffer = np.asarray(buffer, dtype=np.float64)
        total = int(np.asarray(steps))
        start = max(int(consumed), total - self.capacity)
        lost = max(0, start - int(consumed))
        idx = np.arange(start, total) % self.capacity
        self.last_grad_norms = (
            np.asarray(values[2], dtype=np.float64)[idx] if len(values) > 2 else None
        )
        return buffer[idx], total, lost

    @property
    def ring_variables(self) -> list[Any]:
        """The variables `read_since` reads, in the order of its `values`."""
        ring = [self.buffer, self.steps]
        return ring if self.grad_buffer is None else [*ring, self.grad_buffer]
