"""The local dataset readers on small files written here in the real formats (IDX, CIFAR-10 python batches)."""

from __future__ import annotations

import collections
import gzip
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest

from ganlab.data.image_dataset_files import (
    MNIST_FILES,
    ImageArrays,
    load_cifar10,
    load_digits,
    load_mnist,
    read_idx,
)
from ganlab.errors import DatasetFileError

# ------------------------------------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """An IDX file: two zero bytes, the type byte, ndim, big-endian uint32 sizes, then big-endian data."""
    dtype = {0x08: ">u1", 0x0C: ">i4"}[type_byte]
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path: Path, array: np.ndarray, gzipped: bool = False) -> Path:
    payload = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gzipped else payload)
    return path


def make_split(n: int, seed: int, shape: tuple[int, int] = (6, 5)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def write_mnist(folder: Path, gzipped: tuple[bool, bool, bool, bool] = (False,) * 4,
                shape: tuple[int, int] = (6, 5)) -> dict[str, np.ndarray]:
    """20 training and 10 test images; returns what was written, by file name."""
    train, test = make_split(20, 0, shape), make_split(10, 1, shape)
    arrays = dict(zip(MNIST_FILES, (*train, *test), strict=True))
    for (name, array), gz in zip(arrays.items(), gzipped, strict=True):
        write_idx(folder / (f"{name}.gz" if gz else name), array, gz)
    return arrays


def write_cifar_batch(path: Path, batch: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    return path


def cifar_batch(n: int, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"testing batch", b"labels": [int(v) for v in np.arange(n) % 10],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def write_cifar(folder: Path, sizes: tuple[int, ...] = (3, 3, 3, 3, 3, 4)) -> list[dict]:
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    batches = [cifar_batch(n, seed) for seed, n in enumerate(sizes)]
    for name, batch in zip(names, batches, strict=True):
        write_cifar_batch(folder / name, batch)
    return batches


def error_naming(path: Path | str, call, *args) -> str:
    """Run call(*args), which must raise a one-line DatasetFileError that names ``path``; return the message."""
    with pytest.raises(DatasetFileError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message, message
    return message


# ----------------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_round_trip(tmp_path, gzipped):
    images, labels = make_split(20, 0, (28, 28))
    assert np.array_equal(read_idx(write_idx(tmp_path / "images", images, gzipped)), images)
    out = read_idx(write_idx(tmp_path / "labels", labels, gzipped))
    assert out.dtype == np.uint8 and np.array_equal(out, labels)


def test_read_idx_tells_gzip_by_magic_not_name(tmp_path):
    images, _ = make_split(4, 0)
    (tmp_path / "plain.gz").write_bytes(idx_bytes(images))
    (tmp_path / "packed").write_bytes(gzip.compress(idx_bytes(images)))
    assert np.array_equal(read_idx(tmp_path / "plain.gz"), images)
    assert np.array_equal(read_idx(tmp_path / "packed"), images)


def test_read_idx_big_endian_ints(tmp_path):
    values = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    (tmp_path / "ints").write_bytes(idx_bytes(values, 0x0C))
    out = read_idx(tmp_path / "ints")
    assert out.dtype == np.int32 and np.array_equal(out, values)


@pytest.mark.parametrize("gzipped", [(False,) * 4, (True,) * 4, (True, False, False, True)],
                         ids=["plain", "gz", "mixed"])
def test_load_mnist_round_trip(tmp_path, gzipped):
    written = write_mnist(tmp_path, gzipped)
    data = load_mnist(tmp_path)
    assert isinstance(data, ImageArrays) and data.name == "mnist"
    assert data.max_value == 255 and data.classes == 10
    assert data.train_images.shape == (20, 1, 6, 5) and data.test_images.shape == (10, 1, 6, 5)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64
    assert np.array_equal(data.train_images[:, 0], written["train-images-idx3-ubyte"])
    assert np.array_equal(data.train_labels, written["train-labels-idx1-ubyte"])
    assert np.array_equal(data.test_images[:, 0], written["t10k-images-idx3-ubyte"])
    assert np.array_equal(data.test_labels, written["t10k-labels-idx1-ubyte"])


@pytest.mark.parametrize("sub", ["raw", "MNIST/raw"])
def test_load_mnist_torchvision_layouts(tmp_path, sub):
    written = write_mnist(tmp_path / sub, (True, False, True, False), shape=(28, 28))
    data = load_mnist(str(tmp_path))
    assert data.train_images.shape == (20, 1, 28, 28)
    assert np.array_equal(data.test_images[:, 0], written["t10k-images-idx3-ubyte"])


# ------------------------------------------------------------------------------------------------------ CIFAR-10


def test_load_cifar10_round_trip_and_pixel_layout(tmp_path):
    batches = write_cifar(tmp_path)
    image = np.zeros((3, 32, 32), dtype=np.uint8)
    image[0], image[1], image[2] = 10, 20, 30
    image[1, 5, 7] = 200  # green, row 5, column 7
    batches[0][b"data"][1] = image.reshape(-1)
    write_cifar_batch(tmp_path / "data_batch_1", batches[0])

    data = load_cifar10(tmp_path)
    assert data.name == "cifar10" and data.max_value == 255 and data.classes == 10
    assert data.train_images.shape == (15, 3, 32, 32) and data.test_images.shape == (4, 3, 32, 32)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64
    assert (data.train_images[1, 0] == 10).all() and (data.train_images[1, 2] == 30).all()
    assert data.train_images[1, 1, 5, 7] == 200 and data.train_images[1, 1, 5, 6] == 20
    # row = 1024 R, 1024 G, 1024 B, each plane row-major: byte 1024 + 32 r + c is green at (r, c)
    row = batches[2][b"data"][0]
    assert data.train_images[6, 1, 3, 4] == row[1024 + 32 * 3 + 4]
    assert np.array_equal(data.train_labels, np.concatenate([b[b"labels"] for b in batches[:5]]))
    assert np.array_equal(data.test_images.reshape(4, -1), batches[5][b"data"])


def test_load_cifar10_batches_folder_and_str_keys(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar(folder)
    write_cifar_batch(folder / "test_batch", {k.decode(): v for k, v in batches[5].items()})
    data = load_cifar10(tmp_path)
    assert np.array_equal(data.test_labels, batches[5][b"labels"])


# -------------------------------------------------------------------------------------------------------- errors


def test_missing_root():
    for load in (load_mnist, load_cifar10):
        assert "no such directory" in error_naming("/nonexistent/ganlab-data", load, "/nonexistent/ganlab-data")


def test_missing_mnist_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    message = error_naming(tmp_path, load_mnist, tmp_path)
    assert "missing t10k-labels-idx1-ubyte" in message
    assert all(name in message for name in MNIST_FILES)


@pytest.mark.parametrize("gzipped", [False, True])
def test_truncated_idx(tmp_path, gzipped):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    cut = path.read_bytes()[:-7]
    path.unlink()
    if gzipped:
        path = path.with_name(path.name + ".gz")
    path.write_bytes(gzip.compress(cut) if gzipped else cut)
    message = error_naming(path, load_mnist, tmp_path)
    assert "truncated" in message and str(20 * 6 * 5) in message and str(20 * 6 * 5 - 7) in message


def test_corrupt_gzip(tmp_path):
    write_mnist(tmp_path, (False, True, False, False))
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    assert "gzip" in error_naming(path, load_mnist, tmp_path)


def test_bad_magic(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert "not an IDX file" in error_naming(path, read_idx, path)
    path.write_bytes(b"")
    assert "not an IDX file" in error_naming(path, read_idx, path)


def test_unsupported_idx_type(tmp_path):
    path = tmp_path / "odd"
    path.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))
    assert "0x07" in error_naming(path, read_idx, path)


def test_image_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(9, dtype=np.uint8))
    message = error_naming(tmp_path / "t10k-labels-idx1-ubyte", load_mnist, tmp_path)
    assert str(tmp_path / "t10k-images-idx3-ubyte") in message and "10" in message and "9" in message


def test_label_out_of_range(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(20, 10, dtype=np.uint8))
    error_naming(tmp_path / "train-labels-idx1-ubyte", load_mnist, tmp_path)


def test_missing_cifar_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    message = error_naming(tmp_path, load_cifar10, tmp_path)
    assert "missing data_batch_4" in message and "test_batch" in message


def test_truncated_cifar_pickle(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "data_batch_2"
    path.write_bytes(path.read_bytes()[:-500])
    assert "truncated or corrupt" in error_naming(path, load_cifar10, tmp_path)


@pytest.mark.parametrize("change", ["no-data", "float-data", "short-rows", "list-data", "bad-labels"])
def test_malformed_cifar_batch(tmp_path, change):
    batches = write_cifar(tmp_path)
    batch = batches[5]
    if change == "no-data":
        del batch[b"data"]
    elif change == "float-data":
        batch[b"data"] = batch[b"data"].astype(np.float32)
    elif change == "short-rows":
        batch[b"data"] = batch[b"data"][:, :3000]
    elif change == "list-data":
        batch[b"data"] = batch[b"data"].tolist()
    else:
        batch[b"labels"] = [1, 2, 11, 3]
    path = write_cifar_batch(tmp_path / "test_batch", batch)
    error_naming(path, load_cifar10, tmp_path)


class _Runs:
    """Unpickling this would call ``function(*args)``: what a hostile 'dataset' would do."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("payload", ["os.system", "open", "OrderedDict"])
def test_cifar_refuses_arbitrary_objects(tmp_path, payload):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = cifar_batch(4, 9)
    if payload == "os.system":
        batch[b"data"] = _Runs(os.system, f"touch {shlex.quote(str(marker))}")
    elif payload == "open":
        batch[b"data"] = _Runs(open, str(marker), "w")
    else:
        batch[b"extra"] = collections.OrderedDict(a=1)
    path = write_cifar_batch(tmp_path / "data_batch_3", batch)
    message = error_naming(path, load_cifar10, tmp_path)
    assert "refuses to unpickle" in message and "not a CIFAR-10 batch" in message
    assert not marker.exists()


# -------------------------------------------------------------------------------------------------------- digits


def test_digits_split():
    data = load_digits()
    assert data.name == "digits" and data.max_value == 16 and data.classes == 10
    assert len(data.train_images) + len(data.test_images) == 1797
    assert abs(len(data.test_images) / 1797 - 0.2) < 0.01
    assert data.train_images.shape[1:] == (1, 8, 8) and data.test_images.shape[1:] == (1, 8, 8)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64
    assert max(data.train_images.max(), data.test_images.max()) <= 16
    assert set(data.train_labels) == set(data.test_labels) == set(range(10))


def test_digits_split_is_seeded():
    first, again, other = load_digits(0.2, 3), load_digits(0.2, 3), load_digits(0.2, 4)
    assert np.array_equal(first.test_images, again.test_images)
    assert np.array_equal(first.train_labels, again.train_labels)
    assert not np.array_equal(first.test_images, other.test_images)


@pytest.mark.parametrize("holdout", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_digits_holdout_out_of_range(holdout):
    with pytest.raises(ValueError, match="holdout"):
        load_digits(holdout)
