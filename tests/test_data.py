"""`keras_lr.data`: the embedded sample and the IDX loader of the full dataset."""

import gzip

import numpy as np
import pytest

from keras_lr import data

pytestmark = pytest.mark.multibackend


def _write_idx(path, array: np.ndarray, *, cut: int = 0) -> None:
    header = bytes([0, 0, 8, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype("uint8").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(raw[: len(raw) - cut])


@pytest.fixture
def idx_folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("t10k", 4)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", x)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", y)
        arrays[split] = (x, y)
    monkeypatch.setenv("KERAS_LR_FASHION_MNIST", str(tmp_path))
    return tmp_path, arrays


def test_full_loader_reads_the_idx_files_into_writable_arrays(idx_folder):
    folder, arrays = idx_folder
    assert data.find_fashion_mnist() == folder
    (x, y), (xt, yt) = data.load_fashion_mnist()
    np.testing.assert_array_equal(x, arrays["train"][0])
    np.testing.assert_array_equal(y, arrays["train"][1])
    np.testing.assert_array_equal(xt, arrays["t10k"][0])
    np.testing.assert_array_equal(yt, arrays["t10k"][1])
    assert x.dtype == y.dtype == np.uint8 and x.shape == (6, 28, 28)
    # Like keras.datasets and the embedded sample: shuffled in place, scaled...
    for array in (x, y, xt, yt):
        assert array.flags.writeable
    np.random.default_rng(0).shuffle(x)
    x[0, 0, 0] = 7
    (sx, _), _ = data.load_fashion_mnist_sample()
    assert sx.flags.writeable


def test_a_truncated_idx_file_is_a_clear_error(idx_folder):
    folder, arrays = idx_folder
    path = folder / "train-images-idx3-ubyte.gz"
    _write_idx(path, arrays["train"][0], cut=100)
    with pytest.raises(ValueError, match="is not a complete IDX file of uint8"):
        data.load_fashion_mnist()
    with gzip.open(path, "wb") as f:
        f.write(b"<html>not found</html>")
    with pytest.raises(ValueError, match="truncated or corrupt download"):
        data.load_fashion_mnist()
