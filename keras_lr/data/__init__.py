"""Data shipped with keras_lr, and loaders for real datasets found on disk.

`load_fashion_mnist_sample()` returns 4,000 real Fashion-MNIST images that
ship inside the package (MIT licence, see LICENSE-fashion-mnist.txt), so the
demo and the tests work offline. `load_fashion_mnist()` reads the full
dataset from the IDX files where they exist (Keras's cache, or Debian's
`dataset-fashion-mnist` package).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["find_fashion_mnist", "load_fashion_mnist", "load_fashion_mnist_sample"]

_HERE = Path(__file__).resolve().parent
SAMPLE = _HERE / "fashion_mnist_sample.npz"
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_SEARCH = (
    "KERAS_LR_FASHION_MNIST",
    "~/.keras/datasets/fashion-mnist",
    "/usr/share/datasets/fashion-mnist",
)


def load_fashion_mnist_sample() -> tuple[
    tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]
]:
    """The embedded sample: ``((x_train, y_train), (x_test, y_test))``.

    Images are uint8 of shape ``(n, 28, 28)``; labels uint8 in 0..9.

    Example:

    >>> (x, y), (xt, yt) = load_fashion_mnist_sample()
    >>> x.shape, xt.shape, sorted(set(y.tolist())) == list(range(10))
    ((3000, 28, 28), (1000, 28, 28), True)
    """
    with np.load(SAMPLE) as data:
        return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])


def _read_idx(path: Path) -> np.ndarray:
    """A uint8 IDX file as a writable array (like `keras.datasets`' arrays)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = bytearray(f.read())
    ndim = raw[3] if len(raw) > 4 and raw[:3] == b"\x00\x00\x08" else 0
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if not ndim or len(raw) != 4 + 4 * ndim + int(np.prod(dims)):
        raise ValueError(
            f"{path} is not a complete IDX file of uint8 ({len(raw)} bytes): "
            "a truncated or corrupt download? Delete it and fetch it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_fashion_mnist() -> Path | None:
    """The folder holding Fashion-MNIST's IDX files, or None.

    Example:

    >>> folder = find_fashion_mnist()
    >>> folder is None or (folder / "train-labels-idx1-ubyte.gz").exists()
    True
    """
    for entry in _SEARCH:
        value = os.environ.get(entry) if entry.isupper() else entry
        if not value:
            continue
        folder = Path(value).expanduser()
        if (folder / "train-images-idx3-ubyte.gz").exists():
            return folder
    return None


def load_fashion_mnist() -> tuple[
    tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]
]:
    """The full Fashion-MNIST from disk (no download).

    Looks in ``$KERAS_LR_FASHION_MNIST``, Keras's cache and
    ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, uint8, images of shape
        ``(n, 28, 28)``.

    Raises:
        FileNotFoundError: when none holds the files.
        ValueError: for a file that is not a complete IDX file.

    Example:

    >>> if find_fashion_mnist() is not None:
    ...     (x, y), (xt, yt) = load_fashion_mnist()
    ...     assert x.shape == (60000, 28, 28) and yt.shape == (10000,)
    """
    folder = find_fashion_mnist()
    if folder is None:
        places = ", ".join("$" + e if e.isupper() else e for e in _SEARCH)
        raise FileNotFoundError(
            f"Fashion-MNIST's IDX files were not found in {places}. Install "
            "Debian's `dataset-fashion-mnist` package or set "
            "KERAS_LR_FASHION_MNIST to their folder."
        )
    parts = []
    for split in ("train", "t10k"):
        x = _read_idx(folder / f"{split}-images-idx3-ubyte.gz")
        y = _read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
        parts.append((x, y))
    return parts[0], parts[1]
