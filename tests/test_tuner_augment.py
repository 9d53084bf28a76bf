"""Tests of keras_lr.tuner._augment (the search space's augmentation layer)."""

import keras
import numpy as np
import pytest

from keras_lr.tuner._augment import RandomShiftFlip


def _is_shift_or_flip(src, out, max_shift):
    """Whether `out` is `src`, maybe mirrored, moved by |dy|, |dx| <= max_shift."""
    for image in (src, src[:, ::-1]):
        padded = np.pad(image, max_shift)
        for dy in range(2 * max_shift + 1):
            for dx in range(2 * max_shift + 1):
                window = padded[dy : dy + src.shape[0], dx : dx + src.shape[1]]
                if np.array_equal(window, out):
                    return True
    return False


@pytest.mark.multibackend
def test_training_output_is_a_shift_or_flip_of_each_image():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, size=(16, 7, 9, 1)).astype("float32")
    layer = RandomShiftFlip(max_shift=2, seed=3)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    assert y.shape == x.shape
    for src, out in zip(x[..., 0], y[..., 0]):
        assert _is_shift_or_flip(src, out, 2)
    # Not the identity on every image: something moved.
    assert not np.array_equal(x, y)
    # Inference is the identity.
    same = keras.ops.convert_to_numpy(layer(x, training=False))
    assert np.array_equal(same, x)


@pytest.mark.multibackend
def test_trains_inside_a_model_and_serializes():
    model = keras.Sequential(
        [keras.Input((6, 6, 1)), RandomShiftFlip(1, seed=0), keras.layers.Flatten(),
         keras.layers.Dense(2)]
    )  # fmt: skip
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 6, 6, 1), "float32")
    history = model.fit(x, np.zeros((8, 2)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    config = RandomShiftFlip(3, seed=5).get_config()
    clone = RandomShiftFlip.from_config(config)
    assert (clone.max_shift, clone.seed) == (3, 5)
