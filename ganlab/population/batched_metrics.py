"""Sample metrics for a whole population at once: one value per member.

The same definitions as ``ganlab.metrics`` (1D: scipy's biased skewness and excess kurtosis, the KS
statistic against the exact CDF, W1 to the target's n evenly spaced quantiles over its std; 2D:
sliced W1 over fixed directions, modes captured, high-quality share, reverse KL, off-density share),
computed with one sort or one distance matrix for all members instead of K scipy calls. Tests check
each member against the single-run metrics.
"""

from __future__ import annotations

import numpy as np
import torch

from ganlab.data.targets_1d import Target1D
from ganlab.data.targets_2d import ConditionalPictureDensity, GaussianMixture2D, PictureDensity
from ganlab.metrics.metrics_2d import HQ_STDS, PAPER_SAMPLES, sliced_w1_equal_sizes


def metrics_1d_batched(samples: torch.Tensor, target: Target1D) -> dict[str, np.ndarray]:
    """``samples`` [K, n] (any device) -> {metric: float64 array [K]}; NaN where a member's samples are."""
    x = torch.sort(samples.detach().to(torch.float64), dim=1).values
    n = x.shape[1]
    mean = x.mean(dim=1, keepdim=True)
    centred = x - mean
    var = centred.pow(2).mean(dim=1)
    skewness = centred.pow(3).mean(dim=1) / var.pow(1.5)
    kurtosis = centred.pow(4).mean(dim=1) / var.pow(2) - 3.0
    sorted_np = x.cpu().numpy()
    cdf = torch.from_numpy(np.asarray(target.cdf(sorted_np), dtype=np.float64))
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - cdf  # the empirical CDF after each point
    below = cdf - torch.arange(0, n, dtype=torch.float64) / n  # ... and just before it
    ks = torch.maximum(above.max(dim=1).values, below.max(dim=1).values)
    quantiles = torch.from_numpy(np.asarray(target.quantiles(n), dtype=np.float64))
    w1 = (x.cpu() - quantiles).abs().mean(dim=1) / target.std
    out = {"mean": mean.squeeze(1), "std": var.sqrt(), "skewness": skewness, "kurtosis": kurtosis}
    out = {k: v.cpu() for k, v in out.items()}
    out.update(ks=ks, w1_over_std=w1)
    finite = torch.isfinite(x).all(dim=1).cpu()
    return {k: torch.where(finite, v, torch.nan).numpy() for k, v in out.items()}


def _mode_metrics_batched(x: torch.Tensor, means: np.ndarray, std: float,
                          weights: np.ndarray) -> dict[str, torch.Tensor]:
    """As ``mode_metrics`` for [K, n, 2] samples."""
    centres = torch.as_tensor(means, dtype=torch.float64, device=x.device)
    distance, nearest = torch.cdist(x, centres.expand(x.shape[0], -1, -1)).min(dim=2)
    good = distance <= HQ_STDS * std
    counts = torch.zeros(x.shape[0], len(means), dtype=torch.float64, device=x.device)
    counts.scatter_add_(1, nearest, good.to(torch.float64))
    total = counts.sum(dim=1, keepdim=True)
    p = counts / total
    q = torch.as_tensor(weights / weights.sum(), dtype=torch.float64, device=x.device)
    terms = torch.where(p > 0, p * torch.log(p / q), torch.zeros_like(p))
    reverse_kl = torch.where(total.squeeze(1) > 0, terms.sum(dim=1), torch.nan)
    return {"modes": (counts > 0).sum(dim=1).to(torch.float64), "hq_share": good.to(torch.float64).mean(dim=1),
            "reverse_kl": reverse_kl}


def _off_density_batched(x: torch.Tensor, image: PictureDensity) -> torch.Tensor:
    """As ``off_density_share`` for [K, n, 2] samples."""
    off = image.pixel_weights_at(x.reshape(-1, 2).cpu().numpy()).reshape(x.shape[0], x.shape[1]) == 0
    return torch.from_numpy(off.mean(axis=1))


def metrics_2d_batched(samples: torch.Tensor, target, reference: np.ndarray,
                       labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``samples`` [K, n, 2] against a 2D target -> {metric: array [K]}, the same definitions as
    ``ganlab.metrics.metrics_2d`` (``reference`` has n rows, as the evaluator draws it). For a conditional
    target, ``labels`` [n] are the classes of both the samples and the reference (the evaluator asks G
    for the reference's classes), which adds the metrics per class."""
    x = samples.detach().to(torch.float64)
    ref = torch.as_tensor(reference, dtype=torch.float64)
    out = {"sliced_w1": sliced_w1_equal_sizes(x, ref)}
    if isinstance(target, GaussianMixture2D):
        weights = np.asarray(target.weights, np.float64)
        out.update(_mode_metrics_batched(x[:, :PAPER_SAMPLES], target.means, target.std, weights))
        full = _mode_metrics_batched(x, target.means, target.std, weights)
        out.update({f"{key}_full": value for key, value in full.items()})
    if isinstance(target, PictureDensity):
        out["off_density"] = _off_density_batched(x, target)
    if isinstance(target, ConditionalPictureDensity):
        out["off_density"] = _off_density_batched(x, target.union)
        for k, image in enumerate(target.images if labels is not None else []):
            mine = torch.from_numpy(np.flatnonzero(labels == k)).to(x.device)
            if len(mine):
                part = x.index_select(1, mine)
                out[f"sliced_w1_class{k}"] = sliced_w1_equal_sizes(part, ref.index_select(0, mine.cpu()))
                out[f"off_density_class{k}"] = _off_density_batched(part, image)
    return {key: value.cpu().numpy() for key, value in out.items()}
