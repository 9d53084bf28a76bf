"""`ImageClassifierHyperModel`: a ready search space for image classifiers."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras

from keras_lr import _validate
from keras_lr.tuner._augment import RandomShiftFlip
from keras_lr.tuner.hypermodel import LRBatchSizeHyperModel

__all__ = ["ImageClassifierHyperModel"]


class ImageClassifierHyperModel(LRBatchSizeHyperModel):
    """A ResNet-style CNN search space, plus the learning rate and batch size.

    For users with no model of their own. The network is a stem convolution
    then ``stages`` stages of ``blocks`` residual blocks (He et al. 2016,
    arXiv:1512.03385; two 3×3 convolutions with batch normalisation, the
    width doubling and the resolution halving from one stage to the next),
    global average pooling and a softmax-free dense head (logits). Searched:

    - ``width``: channels of the first stage, in `widths`;
    - ``blocks``: residual blocks per stage, in `depths`;
    - ``augment``: random flips and shifts (pad and crop) on or off;
    - and, from `LRBatchSizeHyperModel`, ``batch_size`` and the rate.

    Labels are integer class ids (sparse categorical cross-entropy).

    Args:
        input_shape: ``(height, width, channels)``.
        num_classes: number of classes, >= 2.
        widths: first-stage widths to search.
        depths: blocks per stage to search.
        stages: number of stages (fixed).
        **kwargs: passed to `LRBatchSizeHyperModel` (``batch_sizes``,
            ``lr_range``, ``optimizer``, ``schedule``, ...).

    Example:

    >>> import keras_tuner
    >>> hm = ImageClassifierHyperModel((14, 14, 1), 10, widths=(4,), depths=(1,),
    ...     lr_range=(1e-3, 1e-1), distribution_strategy=None)
    >>> hp = keras_tuner.HyperParameters()
    >>> hm.build(hp).output_shape
    (None, 10)
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        widths: Sequence[int] = (16, 32, 64),
        depths: Sequence[int] = (1, 2, 3),
        stages: int = 3,
        **kwargs: Any,
    ):
        self.input_shape = _check_input_shape(input_shape)
        self.num_classes = _validate.check_int("num_classes", num_classes, minimum=2)
        self.widths = _positive_ints("widths", widths)
        self.depths = _positive_ints("depths", depths)
        self.stages = _validate.check_int("stages", stages, minimum=1)
        kwargs.setdefault(
            "loss", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        kwargs.setdefault("metrics", ["accuracy"])
        super().__init__(self._build_network, **kwargs)

    def _build_network(self, hp: Any) -> keras.Model:
        width = hp.Choice("width", list(self.widths))
        blocks = hp.Choice("blocks", list(self.depths))
        augment = hp.Boolean("augment", default=False)
        inputs = keras.Input(self.input_shape)
        x = inputs
        if augment:
            # Flips and shifts of up to 10% of the side, by pad-and-crop.
            shift = max(1, round(0.1 * min(self.input_shape[:2])))
            x = RandomShiftFlip(shift)(x)
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        for stage in range(self.stages):
            channels = width * 2**stage
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = _residual_block(x, channels, stride)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(self.num_classes)(x)
        return keras.Model(inputs, outputs, name="resnet_classifier")


def _residual_block(x: Any, channels: int, stride: int) -> Any:
    shortcut = x
    y = keras.layers.Conv2D(
        channels, 3, strides=stride, padding="same", use_bias=False
    )(x)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Activation("relu")(y)
    y = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False)(y)
    y = keras.layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != channels:
        shortcut = keras.layers.Conv2D(channels, 1, strides=stride, use_bias=False)(x)
        shortcut = keras.layers.BatchNormalization()(shortcut)
    return keras.layers.Activation("relu")(keras.layers.Add()([y, shortcut]))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not _validate._is_bool(value)


def _int_sequence(name: str, values: Any, example: str) -> tuple[Any, ...]:
    """`values` as a tuple; TypeError unless a sequence of integers."""
    # Any iterable (a tuple, a list, a numpy array), not a scalar or a string.
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(
            f"Argument `{name}` must be a sequence of integers, such as "
            f"{example}. Received: {name}={values!r} (of type "
            f"{type(values).__name__})"
        )
    values = tuple(values)
    for value in values:
        if not _is_int(value):
            raise TypeError(
                f"Argument `{name}` must hold integers, such as {example}. "
                f"Received: {name}={values!r} (holding {value!r} of type "
                f"{type(value).__name__})"
            )
    return tuple(int(v) for v in values)


def _check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    shape = _int_sequence("input_shape", input_shape, "(28, 28, 1)")
    if len(shape) != 3 or any(d <= 0 for d in shape):
        raise ValueError(
            "Argument `input_shape` must be (height, width, channels) of "
            f"positive integers. Received: input_shape={input_shape!r}"
        )
    return shape


def _positive_ints(name: str, values: Any) -> tuple[int, ...]:
    values = _int_sequence(name, values, "(16, 32)")
    if not values or any(v <= 0 for v in values):
        raise ValueError(
            f"Argument `{name}` must be a non-empty sequence of positive "
            f"integers. Received: {name}={values!r}"
        )
    if len(set(values)) != len(values):
        raise ValueError(
            f"Argument `{name}` must not repeat a value (a repeated choice "
            f"is drawn more often). Received: {name}={values!r}"
        )
    return values
