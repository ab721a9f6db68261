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


@pytest.mark.parametrize("data", ["gaussian_1d", "ring8"])
def test_a_frame_without_iteration_or_d_titles_neither(data):
    """ganlab.sample's plot is not a training frame and has no D: it was titled "iteration 0" and
    "samples, D(x) contours" with no contours drawn."""
    import matplotlib.pyplot as plt

    target = build_target(compose_config([f"data={data}"]).data)
    plotter = build_plotter(target)
    samples = np.random.default_rng(0).normal(size=(512, target.dim)).astype(np.float32)
    fig = plotter.figure(plotter.frame(samples, None, None, lambda points, label: None), {})
    titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    plt.close(fig)
    assert not any("iteration" in t or "D(x)" in t for t in titles), titles
    trained = plotter.figure(plotter.frame(samples, None, 300, lambda points, label: None), {})
    titles = [ax.get_title() for ax in trained.axes] + [trained._suptitle.get_text() if trained._suptitle else ""]
    plt.close(trained)
    assert any("iteration 300" in t for t in titles), titles


@pytest.mark.parametrize("with_d", [False, True])
def test_a_1d_figure_makes_room_for_d_only_when_d_is_drawn(with_d):
    """ganlab.sample's plot (no D) put a peak of 0.32 under an axis that ran to 1.3."""
    target = build_target(compose_config([]).data)  # N(4, 1.25): peak density 0.32
    plotter = build_plotter(target)
    samples = np.random.default_rng(0).normal(4.0, 1.25, (20_000, 1)).astype(np.float32)
    frame = plotter.frame(samples, None, None, (lambda xs, k: np.full(len(xs), 0.5)) if with_d else
                          (lambda xs, k: None))
    top = plotter.figure(frame, {}).axes[0].get_ylim()[1]
    assert top >= 1.0 if with_d else 0.35 < top < 0.6


def test_the_modes_centres_are_drawn_above_the_samples():
    """On ring8 the eight centre markers were drawn under the samples and could not be seen."""
    target = build_target(compose_config(["data=ring8"]).data)
    plotter = build_plotter(target)
    frame = plotter.frame(target.sample(2000).numpy(), None, None, lambda points, label: None)
    collections = plotter.figure(frame, {}).axes[0].collections
    centres = next(c for c in collections if len(c.get_offsets()) == 8)
    samples = max(collections, key=lambda c: len(c.get_offsets()))
    assert centres.get_zorder() > samples.get_zorder()
