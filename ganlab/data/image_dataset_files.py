"""Readers for image datasets stored as local files: MNIST-style IDX, CIFAR-10 python batches, sklearn digits.

Nothing is ever downloaded: the user points ``data.root`` at the files. Every problem with a file (missing,
truncated, wrong format, a pickle that tries to run code) is a ``DatasetFileError`` whose one-line message
names the file, so a run stops before it starts with a message the user can act on.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganlab.errors import DatasetFileError

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
CIFAR_TRAIN_FILES = tuple(f"data_batch_{k}" for k in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
CIFAR_ROW = 3 * 32 * 32
CLASSES = 10

# IDX type byte -> big-endian numpy dtype (the IDX specification's six types)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ImageArrays:
    """A dataset split into training and held-out images, as stored (integers, not yet scaled)."""

    name: str  # "digits" | "mnist" | "cifar10"
    train_images: np.ndarray  # uint8, shape (N, C, H, W)
    train_labels: np.ndarray  # int64, shape (N,)
    test_images: np.ndarray  # uint8, shape (M, C, H, W)
    test_labels: np.ndarray  # int64, shape (M,)
    max_value: int  # the largest pixel value of the format: 255 for MNIST/CIFAR-10, 16 for the sklearn digits
    classes: int  # 10 for all three


# ---------------------------------------------------------------------------------------------------- IDX / MNIST


def _read_bytes(path: Path) -> bytes:
    """The file's bytes; an unreadable file is a DatasetFileError, not a bare OSError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise DatasetFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not, told by its magic bytes rather than its name) as a native-endian array."""
    path = Path(path)
    raw = _read_bytes(path)
    where = "file"
    if raw[:2] == _GZIP_MAGIC:
        where = "decompressed file"
        try:
            raw = gzip.decompress(raw)
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
            raise DatasetFileError(f"{path}: corrupt or truncated gzip stream ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[3] == 0:
        raise DatasetFileError(f"{path}: not an IDX file (expected two zero bytes, a type byte and a number of "
                               f"dimensions; found {raw[:4].hex() or 'an empty file'})")
    type_byte, ndim = raw[2], raw[3]
    if type_byte not in _IDX_TYPES:
        supported = ", ".join(f"0x{code:02X}" for code in _IDX_TYPES)
        raise DatasetFileError(f"{path}: unsupported IDX data type 0x{type_byte:02X} (expected one of {supported}; "
                               "MNIST images and labels are 0x08, unsigned bytes)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFileError(f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                               f"{where} has {len(raw)}")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[type_byte])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise DatasetFileError(f"{path}: {problem}: header says {expected} bytes of data (shape {shape}, "
                               f"{dtype.name}), {where} has {found}")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    # astype copies: a writable, native-endian array that does not pin the file's bytes
    return data.astype(dtype.newbyteorder("=")).reshape(shape)


def _dataset_dir(root: str | Path) -> Path:
    """The folder data.root names, which must exist."""
    if not str(root):
        raise DatasetFileError("data.root is empty: set it to the folder that holds the dataset files")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetFileError(f"data.root={path}: no such directory")
    return path


def _find_mnist_file(root: Path, name: str) -> Path | None:
    """``name`` or ``name.gz`` in root, root/raw or root/MNIST/raw (the torchvision layout)."""
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _mnist_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 from one pair of IDX files, checked against each other."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or 0 in images.shape:
        raise DatasetFileError(f"{images_path}: expected unsigned-byte images of shape (N, H, W), "
                               f"found {images.dtype.name} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetFileError(f"{labels_path}: expected unsigned-byte labels of shape (N,), "
                               f"found {labels.dtype.name} of shape {labels.shape}")
    if len(images) != len(labels):
        raise DatasetFileError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                               f"{len(labels)} labels: expected the same count")
    if labels.max() >= CLASSES:
        raise DatasetFileError(f"{labels_path}: labels must be 0..{CLASSES - 1}, found {int(labels.max())}")
    return images[:, None], labels.astype(np.int64)


def load_mnist(root: str | Path) -> ImageArrays:
    """MNIST (or Fashion-MNIST, KMNIST: same files) from the four IDX files under ``root``."""
    folder = _dataset_dir(root)
    found: dict[str, Path] = {}
    for name in MNIST_FILES:
        path = _find_mnist_file(folder, name)
        if path is None:
            raise DatasetFileError(
                f"data.root={folder}: missing {name} (or .gz); expected the four MNIST IDX files: "
                f"{', '.join(MNIST_FILES)}, gzipped or not (in data.root, data.root/raw or data.root/MNIST/raw)")
        found[name] = path
    train_images, train_labels = _mnist_split(found[MNIST_FILES[0]], found[MNIST_FILES[1]])
    test_images, test_labels = _mnist_split(found[MNIST_FILES[2]], found[MNIST_FILES[3]])
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DatasetFileError(f"{found[MNIST_FILES[2]]}: images of size {test_images.shape[2:]}, but "
                               f"{found[MNIST_FILES[0]]} has {train_images.shape[2:]}: expected the same size")
    return ImageArrays("mnist", train_images, train_labels, test_images, test_labels, max_value=255,
                       classes=CLASSES)


# ------------------------------------------------------------------------------------------------------- CIFAR-10


def _numpy_multiarray() -> Any:
    """numpy's multiarray module under whichever name this numpy uses (numpy._core since 2.0)."""
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """What Python 3 pickles bytes as at protocol 2 (``_codecs.encode(text, 'latin1')``), and nothing more."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refuses _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR-10 batch needs: those that rebuild a numpy array (and bytes, see above)."""
    multiarray = _numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global, so a file cannot run code."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")  # the batches were written by Python 2
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DatasetFileError(f"{self._path}: refuses to unpickle {module}.{name}: "
                                   "not a CIFAR-10 batch") from None


def _entry(batch: dict, key: str, path: Path) -> Any:
    """``batch[b"key"]`` or, in copies re-saved with str keys, ``batch["key"]``."""
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    keys = ", ".join(repr(k) for k in list(batch)[:8])
    raise DatasetFileError(f"{path}: no {key!r} entry; expected a CIFAR-10 batch dict with b'data' and b'labels' "
                           f"(found keys: {keys or 'none'})")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python-version batch as images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    try:
        with open(path, "rb") as handle:
            batch = _ArrayOnlyUnpickler(handle, path).load()
    except DatasetFileError:
        raise
    except OSError as exc:
        raise DatasetFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, LookupError,
            OverflowError, MemoryError, RecursionError) as exc:
        raise DatasetFileError(f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc}); "
                               "expected a CIFAR-10 python batch") from None
    if not isinstance(batch, dict):
        raise DatasetFileError(f"{path}: expected a pickled dict (a CIFAR-10 python batch), "
                               f"found {type(batch).__name__}")
    data, labels = _entry(batch, "data", path), _entry(batch, "labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        found = (f"{data.dtype.name} array of shape {data.shape}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise DatasetFileError(f"{path}: expected 'data' as a uint8 array of shape (N, {CIFAR_ROW}), found {found}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):
        labels = np.asarray([], dtype=object)
    if labels.dtype.kind not in "iu" or labels.shape != (len(data),) or (
            len(labels) and (labels.min() < 0 or labels.max() >= CLASSES)):
        raise DatasetFileError(f"{path}: expected 'labels' as {len(data)} integers 0..{CLASSES - 1}, found "
                               f"{labels.dtype.name} values of shape {labels.shape}")
    # a row is 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(root: str | Path) -> ImageArrays:
    """CIFAR-10, python version: data_batch_1..5 and test_batch in ``root`` or ``root/cifar-10-batches-py``."""
    folder = _dataset_dir(root)
    paths: dict[str, Path] = {}
    for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE):
        candidates = (folder / name, folder / "cifar-10-batches-py" / name)
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DatasetFileError(
                f"data.root={folder}: missing {name}; expected the CIFAR-10 python batches "
                f"{', '.join(CIFAR_TRAIN_FILES)} and {CIFAR_TEST_FILE} (in data.root or data.root/cifar-10-batches-py)")
        paths[name] = path
    train = [_read_cifar_batch(paths[name]) for name in CIFAR_TRAIN_FILES]
    test_images, test_labels = _read_cifar_batch(paths[CIFAR_TEST_FILE])
    return ImageArrays("cifar10", np.concatenate([images for images, _ in train]),
                       np.concatenate([labels for _, labels in train]), test_images, test_labels,
                       max_value=255, classes=CLASSES)


# --------------------------------------------------------------------------------------------------------- digits


def load_digits(holdout: float = 0.2, split_seed: int = 0) -> ImageArrays:
    """scikit-learn's bundled 8x8 digits (no download), split per class so both splits see every digit."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout={holdout}: must be in (0, 1), the share of images held out")
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when digits are asked for

    bunch = sklearn_digits()
    images = bunch.images.astype(np.uint8)[:, None]  # values 0..16
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(split_seed)
    test_parts = []
    for digit in range(CLASSES):
        members = np.flatnonzero(labels == digit)
        # at least one image of each class on either side, however small the holdout
        count = min(max(round(holdout * len(members)), 1), len(members) - 1)
        test_parts.append(rng.permutation(members)[:count])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test_parts)] = True
    return ImageArrays("digits", images[~is_test], labels[~is_test], images[is_test], labels[is_test],
                       max_value=16, classes=CLASSES)
