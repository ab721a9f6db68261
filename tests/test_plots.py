"""The training animation: one GIF frame per plotted iteration, for every kind of target, each frame
showing its own iteration's samples on axes that stay where the first frame put them."""

import numpy as np
import pytest
from PIL import Image, ImageChops

from ganlab.config.compose import compose_config
from ganlab.data.targets import build_target
from ganlab.plots.plotter import build_plotter

KINDS = {"1d": [], "2d": ["data=ring8"], "images": ["experiment=goodfellow_digits"]}


@pytest.mark.parametrize("kind", KINDS)
def test_the_animation_has_a_frame_per_plotted_iteration_and_each_differs(kind, tmp_path):
    target = build_target(compose_config(KINDS[kind]).data)
    plotter = build_plotter(target)
    rng = np.random.default_rng(0)

    def decision(xs, labels):
        return np.full(len(xs), 0.5)

    frames = [plotter.frame(rng.normal(loc=i, size=(512, target.dim)).astype(np.float32), None, 100 * i, decision)
              for i in range(3)]
    gif = Image.open(plotter.animate(frames, tmp_path / "a.gif"))
    assert gif.n_frames == 3
    images = []
    for i in range(3):
        gif.seek(i)
        images.append(gif.convert("RGB"))
    assert all(image.size == images[0].size for image in images)
    assert ImageChops.difference(images[0], images[1]).getbbox() is not None  # new samples, new picture
    assert ImageChops.difference(images[1], images[2]).getbbox() is not None
