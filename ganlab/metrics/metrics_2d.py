"""2D sample-quality metrics: a transport distance for any 2D target, mode coverage for Gaussian
mixtures (PacGAN/VEEGAN's protocol), and the share of samples off a picture's density."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from scipy.spatial import cKDTree

from ganlab.data.targets_2d import ConditionalPictureDensity, GaussianMixture2D, PictureDensity, Target2D

PAPER_SAMPLES = 2500  # PacGAN and VEEGAN count modes on 2,500 generated samples
SLICE_DIRECTIONS = 64
HQ_STDS = 3.0  # a sample within 3 std of its nearest mode is "high quality"


def sliced_w1_equal_sizes(x: torch.Tensor, y: torch.Tensor, directions: int = SLICE_DIRECTIONS) -> torch.Tensor:
    """:func:`sliced_wasserstein` of each of K sample sets [K, n, 2] against one set [n, 2] of the same
    size, [K]: between two empirical distributions of n equally weighted points each, the 1D W1 is the
    mean gap between their sorted values, so every direction of every set is one sort (a population's
    members at once; a single run's evaluation took ~4x as long with one scipy call per direction)."""
    angles = torch.pi * torch.arange(directions, dtype=torch.float64) / directions
    axes = torch.stack([torch.cos(angles), torch.sin(angles)]).to(x.device)
    px = torch.sort(x.to(torch.float64) @ axes, dim=1).values
    py = torch.sort(y.to(x.device, torch.float64) @ axes, dim=0).values
    return (px - py).abs().mean(dim=(1, 2))


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, directions: int = SLICE_DIRECTIONS) -> float:
    """Mean over evenly spaced directions of the 1D W1 between the projected samples (scipy's, or its
    sorted form for sets of equal size: :func:`sliced_w1_equal_sizes`).

    A true distance between 2D distributions that is cheap for tens of thousands of points; the
    directions are fixed, so values compare across evaluations and runs.
    """
    if len(x) == len(y):
        return float(sliced_w1_equal_sizes(torch.as_tensor(np.asarray(x, np.float64)).unsqueeze(0),
                                           torch.as_tensor(np.asarray(y, np.float64)), directions)[0])
    angles = np.pi * np.arange(directions) / directions
    axes = np.stack([np.cos(angles), np.sin(angles)])
    px, py = np.asarray(x, np.float64) @ axes, np.asarray(y, np.float64) @ axes
    return float(np.mean([stats.wasserstein_distance(px[:, k], py[:, k]) for k in range(directions)]))


def mode_metrics(samples: np.ndarray, means: np.ndarray, std: float,
                 weights: np.ndarray | None = None) -> dict[str, float]:
    """Modes captured (modes with >= 1 high-quality sample), the high-quality share, and the reverse
    KL(generated || true) of the mode histogram of high-quality samples (nan when there are none)."""
    means = np.asarray(means, np.float64)
    weights = np.full(len(means), 1 / len(means)) if weights is None else np.asarray(weights, np.float64)
    distance, nearest = cKDTree(means).query(np.asarray(samples, np.float64))
    good = distance <= HQ_STDS * std
    counts = np.bincount(nearest[good], minlength=len(means))
    reverse_kl = float(stats.entropy(counts, weights)) if counts.sum() else float("nan")
    return {"modes": float(np.count_nonzero(counts)), "hq_share": float(good.mean()), "reverse_kl": reverse_kl}


def off_density_share(samples: np.ndarray, image: PictureDensity) -> float:
    """Share of samples on black pixels or outside the box: mass the target does not have."""
    return float(np.mean(image.pixel_weights_at(np.asarray(samples, np.float64)) == 0))


def metrics_2d(samples: np.ndarray, target: Target2D, reference: np.ndarray,
               labels: np.ndarray | None = None, reference_labels: np.ndarray | None = None) -> dict[str, float]:
    """Everything logged for a 2D target. ``reference`` is a fixed set of target samples; ``labels``
    (a conditional model's classes) add the same metrics per class."""
    out = {"sliced_w1": sliced_wasserstein(samples, reference)}
    if isinstance(target, GaussianMixture2D):
        out.update(mode_metrics(samples[:PAPER_SAMPLES], target.means, target.std, target.weights))
        full = mode_metrics(samples, target.means, target.std, target.weights)
        out.update({f"{key}_full": value for key, value in full.items()})
    if isinstance(target, PictureDensity):
        out["off_density"] = off_density_share(samples, target)
    if isinstance(target, ConditionalPictureDensity):
        out["off_density"] = off_density_share(samples, target.union)
        if labels is not None and reference_labels is not None:
            for k, image in enumerate(target.images):
                mine, theirs = samples[labels == k], reference[reference_labels == k]
                if len(mine) and len(theirs):
                    out[f"sliced_w1_class{k}"] = sliced_wasserstein(mine, theirs)
                    out[f"off_density_class{k}"] = off_density_share(mine, image)
    return out
