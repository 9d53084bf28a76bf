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

    def update_state(self, values, sample_weight=None):
        keras.metrics.Mean.update_state(self, values, sample_weight=sample_weight)
        if not self.recording:
            return
        loss = ops.cast(ops.mean(ops.convert_to_tensor(values)), "float32")
        index = ops.arange(self.capacity, dtype="int32")
        # `.value`: JAX no longer converts a variable object implicitly.
        steps = ops.cast(self.steps.value, "int32")
        slot = ops.mod(steps, self.capacity)
        self.buffer.assign(ops.where(ops.equal(index, slot), loss, self.buffer.value))
        self.steps.assign(ops.add(steps, 1))

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
            values: optional ``(buffer, steps)`` host arrays to use instead of
                reading the variables (the JAX trainer keeps them elsewhere
                mid-epoch).

        Returns:
            ``(losses, total, lost)``: the losses in step order, the number of
            steps recorded so far, and how many steps were overwritten before
            they could be read (0 when reads come every ``capacity`` steps or
            more often).
        """
        if values is None:
            buffer = keras.ops.convert_to_numpy(self.buffer.value)
            steps = keras.ops.convert_to_numpy(self.steps.value)
        else:
            buffer, steps = values
        buffer = np.asarray(buffer, dtype=np.float64)
        total = int(np.asarray(steps))
        start = max(int(consumed), total - self.capacity)
        lost = max(0, start - int(consumed))
        idx = np.arange(start, total) % self.capacity
        return buffer[idx], total, lost
