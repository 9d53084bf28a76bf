"""Shared fixtures: small real-data tasks, models and state comparisons."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()


@pytest.fixture(scope="session")
def fashion_sample():
    """The embedded Fashion-MNIST sample, scaled to [0, 1], shape (n, 28, 28, 1)."""
    from keras_lr.data import load_fashion_mnist_sample

    (x, y), (xt, yt) = load_fashion_mnist_sample()
    scale = np.float32(1.0 / 255.0)
    return (
        (x[..., None].astype("float32") * scale, y.astype("int32")),
        (xt[..., None].astype("float32") * scale, yt.astype("int32")),
    )


def small_cnn(
    optimizer: keras.optimizers.Optimizer | None = None,
    *,
    batchnorm: bool = False,
    dropout: float = 0.0,
    seed: int = 0,
    dtype: str | None = None,
) -> keras.Model:
    """A small CNN on 28x28x1, compiled with `optimizer` (default Adam)."""
    keras.utils.set_random_seed(seed)
    layers = [
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, strides=2, dtype=dtype),
    ]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization(dtype=dtype))
    layers += [
        keras.layers.Activation("relu", dtype=dtype),
        keras.layers.Flatten(dtype=dtype),
    ]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, dtype=dtype))
    layers.append(keras.layers.Dense(10, dtype=dtype))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def all_state(model: keras.Model) -> list[np.ndarray]:
    """Every variable of the model, its optimizer and its metrics, on the host."""
    variables = list(model.variables) + list(model.optimizer.variables)
    variables += list(model.metrics_variables)
    return [np.array(keras.ops.convert_to_numpy(v.value), copy=True) for v in variables]


def assert_bitwise_equal(before: list[np.ndarray], after: list[np.ndarray]) -> None:
    assert len(before) == len(after)
    for i, (a, b) in enumerate(zip(before, after)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert a.tobytes() == b.tobytes(), f"variable {i} differs"


def run_jax_data_parallel(script: str, devices: int = 2) -> str:
    """Runs `script` in a process of its own on JAX, under `DataParallel`.

    The host CPU is split into `devices` JAX devices, which must be set
    before JAX starts (hence the process); the script runs with
    `keras.distribution.DataParallel` over them already set. Skips the test
    where JAX is not installed.

    Returns:
        The script's standard output.
    """
    pytest.importorskip("jax")
    prelude = (
        "import keras\n"
        "keras.distribution.set_distribution(keras.distribution.DataParallel("
        "devices=keras.distribution.list_devices()))\n"
    )
    return _run_script(
        prelude + script,
        "jax",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    )


def run_tf_mirrored(script: str, replicas: int = 2) -> str:
    """Runs `script` in a process of its own on TensorFlow, with a strategy.

    The host CPU is split into `replicas` logical devices, which must be
    set before TensorFlow starts (hence the process); the script runs with
    ``strategy``, a `tf.distribute.MirroredStrategy` over them, and ``tf``
    defined.

    Returns:
        The script's standard output.
    """
    prelude = (
        "import tensorflow as tf\n"
        "tf.config.set_logical_device_configuration(\n"
        "    tf.config.list_physical_devices('CPU')[0],\n"
        f"    [tf.config.LogicalDeviceConfiguration()] * {replicas},\n"
        ")\n"
        "import keras\n"
        "strategy = tf.distribute.MirroredStrategy(\n"
        f"    [f'/cpu:{{i}}' for i in range({replicas})]\n"
        ")\n"
    )
    return _run_script(prelude + script, "tensorflow")


def _run_script(script: str, backend: str, **env_vars: str) -> str:
    """Runs `script` with Python in a process of its own on `backend`.

    Returns:
        The script's standard output (the test fails on a non-zero exit).
    """
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.update(env_vars)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
