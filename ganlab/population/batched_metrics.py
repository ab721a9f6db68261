"""1D sample metrics for a whole population at once: samples ``[K, n]`` -> one value per member.

The same definitions as ``ganlab.metrics.metrics_1d`` (scipy's biased skewness and excess kurtosis,
the KS statistic against the exact CDF, W1 to the target's n evenly spaced quantiles over its std),
computed with one sort of all members instead of K scipy calls. Tests check each member against scipy.
"""

from __future__ import annotations

import numpy as np
import torch

from ganlab.data.targets_1d import Target1D


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
