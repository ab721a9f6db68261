"""Metrics against hand-computed references; losses against torch's BCELoss on probabilities."""

import numpy as np
import pytest
import torch
from scipy import stats

from ganlab.data.targets_1d import Gaussian1D
from ganlab.metrics.metrics_1d import metrics_1d as sample_metrics
from ganlab.training.losses import discriminator_loss, generator_loss

TARGET = Gaussian1D(4.0, 1.25)


def _ks_by_hand(x, cdf):
    x = np.sort(x)
    n = x.size
    f = cdf(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def test_exact_samples_score_near_zero():
    x = np.random.default_rng(0).normal(4.0, 1.25, 20_000)
    m = sample_metrics(x, TARGET)
    assert m["ks"] < 0.015  # ~1.36/sqrt(n) = 0.0096 at the 95th percentile
    assert m["w1_over_std"] < 0.02
    assert m["ks"] == pytest.approx(_ks_by_hand(x, TARGET.cdf))
    assert m["mean"] == pytest.approx(x.mean()) and m["std"] == pytest.approx(x.std())
    assert m["skewness"] == pytest.approx(stats.skew(x)) and m["kurtosis"] == pytest.approx(stats.kurtosis(x))


def test_shifted_samples_score_large():
    x = np.random.default_rng(0).normal(4.0 + 0.625, 1.25, 20_000)  # shifted by half a std
    m = sample_metrics(x, TARGET)
    assert m["ks"] == pytest.approx(stats.norm.cdf(0.25) - stats.norm.cdf(-0.25), abs=0.015)
    assert m["w1_over_std"] == pytest.approx(0.5, abs=0.02)


def test_collapsed_samples_score_large():
    m = sample_metrics(np.full(1000, 4.0), TARGET)
    assert m["ks"] == pytest.approx(0.5)
    assert m["std"] == 0.0


def _bce(p, t):
    return torch.nn.BCELoss()(p, torch.full_like(p, t))


@pytest.mark.parametrize("smoothing", [0.0, 0.05])
def test_bce_losses_match_bceloss_on_probabilities(smoothing):
    real, fake = torch.randn(64, 1), torch.randn(64, 1)
    pr, pf = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = _bce(pr, 1 - smoothing) + _bce(pf, 0.0)
    torch.testing.assert_close(discriminator_loss("bce", real, fake, 1 - smoothing), expected_d)
    torch.testing.assert_close(generator_loss("bce", fake), _bce(pf, 1.0))
    torch.testing.assert_close(generator_loss("bce_saturating", fake), torch.log(1 - pf).mean())


def test_clamped_log_losses_follow_s3_and_never_nan():
    real, fake = torch.tensor([[50.0], [0.3]]), torch.tensor([[-50.0], [60.0]])
    pr, pf = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = (-torch.log(pr.clamp_min(1e-5)) - torch.log((1 - pf).clamp_min(1e-5))).mean()
    torch.testing.assert_close(discriminator_loss("clamped_log", real, fake), expected_d)
    g = generator_loss("clamped_log", torch.tensor([[-100.0]]))
    assert g.item() == pytest.approx(-np.log(1e-5))
