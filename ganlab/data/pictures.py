"""Reading a picture file (or a shipped example's name) as 2D density weights: white = more mass.

Pillow is imported only here, and only when a picture target is built.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganlab.errors import PictureError

PICTURE_DIR = Path(__file__).resolve().parent / "pictures"


def example_names() -> list[str]:
    """The shipped example pictures (``python -m ganlab.data.example_pictures`` draws them)."""
    return sorted(p.stem for p in PICTURE_DIR.glob("*.png"))


def resolve_picture_path(path: str) -> Path:
    """A file path, or the name of a shipped example (``zig``, ``blobs``, ...)."""
    if path in example_names():
        return PICTURE_DIR / f"{path}.png"
    if not str(path).strip():  # Path('') is the current directory: say what is missing instead
        raise PictureError(f"data.path={path!r} is empty; give a PNG/JPEG path or an example: "
                           f"{', '.join(example_names())}")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise PictureError(f"data.path={path!r}: no such file; give a PNG/JPEG path or an example: "
                           f"{', '.join(example_names())}")
    if not resolved.is_file():  # a directory, a device such as /dev/zero, a pipe
        kind = "a directory" if resolved.is_dir() else "not a regular file"
        raise PictureError(f"data.path={path!r} is {kind}; give a PNG/JPEG file or an example: "
                           f"{', '.join(example_names())}")
    return resolved


def load_picture(path: str, max_side: int = 512) -> np.ndarray:
    """A grayscale picture as (H, W) pixel weights in [0, 1] (white = 1). Pictures larger than
    ``max_side`` are shrunk with a box filter, which keeps each region's mass; 0 keeps the size."""
    from PIL import Image, UnidentifiedImageError

    file = resolve_picture_path(path)
    try:
        with Image.open(file) as image:  # Pillow refuses pictures over 2 x MAX_IMAGE_PIXELS (178 MP)
            gray = image.convert("L")
    except Image.DecompressionBombError:
        raise PictureError(f"data.path={path!r} is too large to read safely (over {2 * Image.MAX_IMAGE_PIXELS:,} "
                           f"pixels); shrink it first (it is reduced to {max_side} pixels a side anyway)") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise PictureError(f"data.path={path!r} is not a readable image ({type(exc).__name__}); "
                                "use a PNG or JPEG file") from None
    if max_side and max(gray.size) > max_side:
        scale = max_side / max(gray.size)
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
                           Image.Resampling.BOX)
    weights = np.asarray(gray, dtype=np.float64) / 255.0
    if not weights.any():
        raise PictureError(f"data.path={path!r} is all black: white pixels carry the mass, "
                                "so the picture needs some")
    return weights
