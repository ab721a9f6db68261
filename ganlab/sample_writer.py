"""Samples written to ``.npy`` or ``.csv`` chunk by chunk, so memory does not grow with their number.

``python -m ganlab.sample n=20000000`` once held every sample, and a table of them, at once (~290
bytes a sample). Now one chunk of samples exists at a time, appended to the file as it is made (an
``.npy`` file's header states the final shape first). The file is written under a temporary name and
renamed at the end, so an error (a full disk, a bad path) leaves no half-written output; the path is
opened before any sampling, so a path that cannot be written fails at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ganlab.errors import SampleError

CHUNK = 100_000  # samples per chunk: ~0.4 MB per dimension in float32


def _columns(dim: int, labelled: bool) -> list[str]:
    names = ["x"] if dim == 1 else ["x", "y"] if dim == 2 else [f"p{i}" for i in range(dim)]  # images: pixels
    return names + (["label"] if labelled else [])


class SampleWriter:
    """``write(samples, labels)`` chunk after chunk, then ``close()``; use as a context manager."""

    def __init__(self, out: Path, n: int, dim: int, labelled: bool) -> None:
        self.out, self.n, self.dim, self.labelled = out, n, dim, labelled
        self.tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        self.rows = 0
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.suffix == ".npy":
                self._handle = open(self.tmp, "wb")
                np.lib.format.write_array_header_1_0(self._handle, {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                    "shape": (n, dim + int(labelled))})
            else:
                self._handle = open(self.tmp, "w")
                self._handle.write(",".join(_columns(dim, labelled)) + "\n")
        except OSError as exc:
            raise SampleError(f"out={str(out)!r} cannot be written: {exc.strerror or exc}") from None

    def write(self, samples: np.ndarray, labels: np.ndarray | None) -> None:
        rows = len(samples)
        try:
            if self.out.suffix == ".npy":
                table = samples if labels is None else np.column_stack([samples, labels])
                self._handle.write(np.ascontiguousarray(table, dtype=np.float32).tobytes())
            else:
                table = samples if labels is None else np.column_stack([samples, labels])
                fmt = ["%.7g"] * self.dim + (["%d"] if labels is not None else [])
                np.savetxt(self._handle, table, delimiter=",", fmt=fmt)
        except OSError as exc:
            raise SampleError(f"out={str(self.out)!r}: writing failed after {self.rows:,} samples: "
                              f"{exc.strerror or exc}") from None
        self.rows += rows

    def close(self) -> None:
        """Flush the file to disk and give it its name."""
        try:
            if self.rows != self.n:
                raise OSError(f"{self.rows:,} samples written of {self.n:,}")
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self.tmp, self.out)
        except OSError as exc:
            raise SampleError(f"out={str(self.out)!r} cannot be written: {exc.strerror or exc}") from None

    def discard(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()
