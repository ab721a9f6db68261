"""1D sample-quality metrics against the exact target, computed with scipy.stats."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from ganlab.data.targets_1d import Target1D

SAMPLE_METRICS_1D = ("mean", "std", "skewness", "kurtosis", "ks", "w1_over_std")


def metrics_1d(samples: np.ndarray, target: Target1D) -> dict[str, float]:
    """Moments of the samples, KS statistic against the exact CDF, and W1 in units of the target's std.

    W1 is computed against the target's n evenly spaced quantiles, the n-point distribution closest
    to the target, so it measures the generator and not the noise of a second sample.
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    with warnings.catch_warnings():  # a collapsed generator gives nan skewness/kurtosis: that is the point
        warnings.simplefilter("ignore", RuntimeWarning)
        return _metrics(x, target)


def _metrics(x: np.ndarray, target: Target1D) -> dict[str, float]:
    return {
        "mean": float(np.mean(x)),
        "std": float(np.std(x)),
        "skewness": float(stats.skew(x)),
        "kurtosis": float(stats.kurtosis(x)),
        "ks": float(stats.kstest(x, target.cdf).statistic),
        "w1_over_std": float(stats.wasserstein_distance(x, target.quantiles(x.size)) / target.std),
    }
