"""Draws the example density pictures shipped in ``ganlab/data/pictures`` (no downloaded images).

Run ``python -m ganlab.data.example_pictures`` to redraw them; the PNGs are committed so a fresh clone
does not need to. White is mass, black is none: the same convention as a user's own picture.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ganlab.data.pictures import PICTURE_DIR

SIZE = 256


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (SIZE, SIZE), 0)
    return image, ImageDraw.Draw(image)


def zig() -> Image.Image:
    """S4's zig-zag line: a thin, connected, one-dimensional density."""
    image, draw = _canvas()
    xs = np.linspace(30, SIZE - 30, 6)
    points = [(float(x), 60.0 if i % 2 == 0 else SIZE - 60.0) for i, x in enumerate(xs)]
    draw.line(points, fill=255, width=10, joint="curve")
    return image


def _blob(center: tuple[float, float], radius: float) -> Image.Image:
    image, draw = _canvas()
    cx, cy = center
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    return image.filter(ImageFilter.GaussianBlur(radius / 3))


def blob_left() -> Image.Image:
    return _blob((SIZE * 0.27, SIZE * 0.5), SIZE * 0.14)


def blob_right() -> Image.Image:
    return _blob((SIZE * 0.73, SIZE * 0.5), SIZE * 0.14)


def blobs() -> Image.Image:
    """S4's two separated blobs (the sum of blob_left and blob_right, the conditional example's classes)."""
    return Image.fromarray(np.maximum(np.asarray(blob_left()), np.asarray(blob_right())))


def ring() -> Image.Image:
    """A hollow ring: G must wrap a Gaussian latent around a hole."""
    image, draw = _canvas()
    r = SIZE * 0.33
    c = SIZE / 2
    draw.ellipse((c - r, c - r, c + r, c + r), outline=255, width=18)
    return image.filter(ImageFilter.GaussianBlur(2))


def star() -> Image.Image:
    """A five-armed star with thin arms and a solid core: thin parts are where GANs leak mass."""
    image, draw = _canvas()
    c = SIZE / 2
    for k in range(5):
        angle = 2 * np.pi * k / 5 - np.pi / 2
        end = (c + 0.42 * SIZE * np.cos(angle), c + 0.42 * SIZE * np.sin(angle))
        draw.line([(c, c), end], fill=255, width=6)
    draw.ellipse((c - 28, c - 28, c + 28, c + 28), fill=255)
    return image


EXAMPLES = {"zig": zig, "blobs": blobs, "blob_left": blob_left, "blob_right": blob_right, "ring": ring,
            "star": star}


def main() -> None:
    PICTURE_DIR.mkdir(parents=True, exist_ok=True)
    for name, draw in EXAMPLES.items():
        draw().save(PICTURE_DIR / f"{name}.png", optimize=True)
        print(f"wrote {PICTURE_DIR / name}.png")


if __name__ == "__main__":
    main()
