"""Records each training step's global gradient norm in the loss ring.

Keras's train steps hand the gradients to the optimizer and to nothing
else, so a callback never sees them. `GradNormHook` wraps the optimizer's
entry point for the length of a `fit` (an instance attribute, removed
afterwards; nothing is saved with the optimizer) and computes the global
norm ``||g|| = sqrt(sum_i ||g_i||^2)`` (Pascanu et al., 2013,
arXiv:1211.5063) inside the compiled step:

- TensorFlow and PyTorch call ``optimizer.apply(grads)`` after the step's
  loss is recorded: the norm is written straight into the ring, at the slot
  of that loss;
- JAX calls ``optimizer.stateless_apply(state, grads, variables)`` before
  the loss is recorded: the norm is kept on the recorder and written with
  the loss, in the same trace (the ring is metric state, which the JAX
  trainer carries from step to step; the optimizer's state is left alone).

Under a `keras.optimizers.LossScaleOptimizer` the gradients are scaled:
the norm is divided by the current scale, and a step whose gradients
overflow (which the optimizer skips) records -1, read as "no step".

Under a `tf.distribute` strategy of several replicas, each replica's
optimizer gets the gradient of its own share of the batch (Keras scales
each share's loss by ``1 / replicas``) and sums them across replicas when it
updates: the norm is of that sum, the whole batch's gradient, which costs
one more all-reduce of the gradients per step.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_lr._state import _MISSING, set_attr

#: Recorded for a step that a loss scaler skipped (non-finite gradients).
SKIPPED = -1.0


def global_norm(grads: Any) -> Any:
    """``sqrt(sum_i ||g_i||^2)`` over the non-None gradients, in float32.

    Example:

    >>> import numpy as np
    >>> float(global_norm([np.array([3.0]), None, np.array([[4.0]])]))
    5.0
    """
    squares = []
    for g in grads:
        if g is None:
            continue
        if type(g).__name__ == "IndexedSlices":  # TensorFlow's sparse gradient
            g = g.values
        g = ops.cast(ops.convert_to_tensor(g), "float32")
        squares.append(ops.sum(ops.square(g)))
    if not squares:
        return None
    return ops.sqrt(ops.sum(ops.stack(squares)))


def _summed_over_replicas(grads: list[Any]) -> list[Any]:
    """The gradients summed over the replicas of a `tf.distribute` strategy.

    Called in the replica context of a TensorFlow train step; anywhere else
    (one replica, another backend) the gradients are returned as they are.
    """
    if keras.backend.backend() != "tensorflow":
        return grads
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads
    present = [i for i, g in enumerate(grads) if g is not None]
    if not present:
        return grads
    summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
    grads = list(grads)
    for i, g in zip(present, summed):
        grads[i] = g
    return grads


class GradNormHook:
    """Wraps an optimizer's apply step to record gradient norms.

    Args:
        optimizer: the model's optimizer (a `LossScaleOptimizer` included).
        recorder: a `RingLossRecorder` built with ``grad_norms=True``.
    """

    def __init__(self, optimizer: Any, recorder: Any):
        self.optimizer = optimizer
        self.recorder = recorder
        self._saved: dict[str, Any] = {}
        self._scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def install(self) -> None:
        if keras.backend.backend() == "jax":
            self._wrap("stateless_apply", self._stateless_apply)
        else:
            self._wrap("apply", self._apply)

    def uninstall(self) -> None:
        for name, value in self._saved.items():
            set_attr(self.optimizer, name, value)
        self._saved = {}
        self.recorder.pending_grad_norm = None

    def _wrap(self, name: str, replacement: Any) -> None:
        self._saved[name] = vars(self.optimizer).get(name, _MISSING)
        original = getattr(self.optimizer, name)
        set_attr(
            self.optimizer,
            name,
            lambda *args, **kwargs: replacement(original, *args, **kwargs),
        )

    def _norm(self, grads: Any, scale: Any) -> Any:
        norm = global_norm(grads)
        if norm is None:
            return None
        if scale is not None:
            norm = ops.divide(norm, ops.cast(scale, "float32"))
            norm = ops.where(ops.isfinite(norm), norm, SKIPPED)
        return norm

    def _apply(self, original, grads, trainable_variables=None):
        grads = list(grads)
        scale = self.optimizer.dynamic_scale.value if self._scaled else None
        norm = self._norm(_summed_over_replicas(grads), scale)
        if norm is not None:
            self.recorder.record_grad_norm(norm)
        return original(grads, trainable_variables)

    def _stateless_apply(
        self, original, optimizer_variables, grads, trainable_variables
    ):
        grads = list(grads)
        scale = None
        if self._scaled:
            position = [id(v) for v in self.optimizer.variables].index(
                id(self.optimizer.dynamic_scale)
            )
            scale = optimizer_variables[position]
        self.recorder.pending_grad_norm = self._norm(grads, scale)
        return original(optimizer_variables, grads, trainable_variables)
