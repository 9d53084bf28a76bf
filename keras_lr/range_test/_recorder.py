"""A loss tracker that also keeps each step's own loss on the device.

Keras's batch logs carry the running mean of the epoch's loss, not the loss
of the step. Every backend's train step calls
``model._loss_tracker.update_state(loss, sample_weight=batch_size)`` with the
step's loss; `StepLossRecorder` stands in for that tracker for the length of
a range test. It keeps the tracker's running mean (so logs and progress bars
are unchanged) and writes the step's loss into a device buffer at the index
of its own step counter. The buffer is one of the model's metric variables,
so it lives in the compiled step's state on JAX too, and the host reads it
only when it chooses to.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from keras_lr._state import _MISSING, set_attr


class StepLossRecorder(keras.metrics.Mean):
    """`Mean` plus a device buffer of the first `capacity` per-step values.

    Args:
        capacity: number of steps to keep; later steps update the mean only.
        name: the metric's name; ``"loss"`` so that logs keep their key.

    Example:

    >>> rec = StepLossRecorder(capacity=4)
    >>> for value in (3.0, 1.0, 2.0):
    ...     rec.update_state(value, sample_weight=8)
    >>> rec.recorded().tolist(), float(rec.result())
    ([3.0, 1.0, 2.0], 2.0)
    """

    def __init__(self, capacity: int, name: str = "loss"):
        super().__init__(name=name)
        self.capacity = int(capacity)
        self.buffer = self._step_buffer("step_losses")
        self.steps = self.add_variable(
            shape=(),
            initializer="zeros",
            dtype="int32",
            aggregation="only_first_replica",
            name="recorded_steps",
        )
        # Read when the step function is traced: False for evaluation.
        self.recording = True
        # Set by `gate_train_step`: then only a train step writes (depth > 0
        # while one runs or is traced), whoever else calls the tracker.
        self.gated = False
        self.train_depth = 0

    @property
    def writes(self) -> bool:
        """Whether an `update_state` now records its value as a step."""
        return self.recording and (not self.gated or self.train_depth > 0)

    def _step_buffer(self, name: str):
        """A float32 device buffer of one value per step, `capacity` long."""
        return self.add_variable(
            shape=(self.capacity,),
            initializer="zeros",
            dtype="float32",
            aggregation="mean",
            name=name,
        )

    def update_state(self, values, sample_weight=None):
        super().update_state(values, sample_weight=sample_weight)
        if not self.writes:
            return
        loss = ops.cast(ops.mean(ops.convert_to_tensor(values)), "float32")
        index = ops.arange(self.capacity, dtype="int32")
        steps = self.steps.value
        hit = ops.equal(index, ops.cast(steps, "int32"))
        self.buffer.assign(ops.where(hit, loss, self.buffer.value))
        self.steps.assign(ops.add(steps, 1))

    def reset_state(self):
        # `fit` resets metrics every epoch: keep the buffer, reset the mean.
        self.total.assign(ops.zeros(self.total.shape, dtype=self.total.dtype))
        self.count.assign(ops.zeros(self.count.shape, dtype=self.count.dtype))

    def recorded(self, values=None):
        """The recorded losses as a numpy array (a host read).

        Args:
            values: optional ``(buffer, steps)`` host arrays to use instead of
                reading the variables (`keras_lr._live` reads them mid-epoch).
        """
        import numpy as np

        if values is None:
            values = (self.buffer.value, self.steps.value)
        buffer, steps = (keras.ops.convert_to_numpy(v) for v in values)
        n = int(np.asarray(steps))
        values = np.asarray(buffer)
        return values[: min(n, self.capacity)].astype(np.float64)


def gate_train_step(model: Any, recorder: StepLossRecorder) -> Callable[[], None]:
    """Lets `recorder` record only the losses of `model`'s train steps.

    The recorder stands in for the model's loss tracker, which every
    `test_step` updates too: an `evaluate` that a callback runs in the middle
    of `fit` (not told about the recorder, so it cannot switch it off) would
    otherwise write its batches' losses into the buffer as training steps.
    The model's `train_step` is wrapped, for the time of the recording, in a
    function that marks the recorder as inside a train step while it runs:
    at trace time on TensorFlow and JAX, at every step on PyTorch. (Not on
    JAX with Flax NNX, whose trainer calls the class's `train_step`; there
    the recorder records whatever the tracker sees, as before.)

    Returns:
        A function that undoes the wrapping.

    Example:

    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> rec = StepLossRecorder(capacity=2)
    >>> undo = gate_train_step(model, rec)
    >>> rec.update_state(1.0)  # not in a train step: not recorded
    >>> int(rec.steps.value), "train_step" in vars(model)
    (0, True)
    >>> undo()
    >>> rec.gated, "train_step" in vars(model)
    (False, False)
    """
    nnx = getattr(keras.config, "is_nnx_enabled", lambda: False)()
    if keras.backend.backend() == "jax" and nnx:
        return lambda: None
    saved = vars(model).get("train_step", _MISSING)
    inner = model.train_step

    def train_step(*args: Any, **kwargs: Any) -> Any:
        recorder.train_depth += 1
        try:
            return inner(*args, **kwargs)
        finally:
            recorder.train_depth -= 1

    set_attr(model, "train_step", train_step)
    recorder.gated = True

    def undo() -> None:
        set_attr(model, "train_step", saved)
        recorder.gated = False
        recorder.train_depth = 0

    return undo


def clear_leftover(model: Any, callback: Any) -> None:
    """Puts back what a keras_lr callback left installed when its `fit` raised.

    `LRRangeTest` and `DivergenceDetector` replace the model's loss tracker
    (and more) for the length of `fit` and put it back in `on_train_end`,
    which Keras skips when `fit` raises. The recorder they install knows its
    owner (``recorder.owner``, with ``owner._abandon()`` putting everything
    back): found at the start of a later `fit`, it is cleared with a warning
    instead of being saved as the model's own tracker, which would keep the
    sweep's rate or the wrapped `train_step` for good. Two such callbacks in
    the same `fit` (the same ``params``, which Keras hands every callback of
    one `fit`) would each record into its own tracker while only one is in
    place: refused, after putting back what the first one installed.

    Args:
        model: the model a callback is about to install on.
        callback: that callback.

    Raises:
        ValueError: when another keras_lr callback of the same `fit` has
            installed its recorder already.
    """
    tracker = vars(model).get("_loss_tracker")
    owner = getattr(tracker, "owner", None)
    if owner is None:
        return
    params = getattr(owner, "params", None)
    if (
        owner is not callback
        and params is not None
        and params is getattr(callback, "params", None)
    ):
        owner._abandon()  # `fit` ends here: nothing of it stays installed
        raise ValueError(
            f"{type(callback).__name__} and {type(owner).__name__} cannot watch "
            "the same `fit`: each records every step's loss in place of the "
            "model's loss tracker. Run the range test on its own first (or "
            "`keras_lr.lr_range_test`), then train with the detector."
        )
    warnings.warn(
        f"The model still carried what the {type(owner).__name__} callback "
        "installed for a `fit` that raised (Keras then skips `on_train_end`): "
        "it was put back before this `fit`. After an interrupted `fit`, call "
        f"`{_CLEANUP.get(type(owner).__name__, 'on_train_end')}()` on the "
        "callback.",
        stacklevel=3,
    )
    owner._abandon()


#: The call that puts a callback's installation back after a `fit` raised.
_CLEANUP = {"LRRangeTest": "restore", "DivergenceDetector": "on_train_end"}
