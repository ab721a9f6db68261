"""2D metrics on hand-made sample sets whose right answers are known in closed form."""

import numpy as np
import pytest
from scipy import stats

from ganlab.data.targets_2d import GaussianMixture2D, PictureDensity, ring_means
from ganlab.metrics import headline, sample_metrics
from ganlab.metrics.metrics_2d import mode_metrics, off_density_share, sliced_wasserstein

RING = GaussianMixture2D(ring_means(8, 1.0), 0.01)
RNG = np.random.default_rng(0)


def _around(means, n, std):
    idx = np.arange(n) % len(means)
    return means[idx] + std * RNG.standard_normal((n, 2))


def test_all_modes_covered_evenly():
    m = mode_metrics(_around(RING.means, 8000, 0.01), RING.means, RING.std)
    assert m["modes"] == 8
    assert m["hq_share"] == pytest.approx(stats.chi2(2).cdf(9), abs=0.01)  # P(|N(0, I)| <= 3) in 2D
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-3)


def test_one_mode_only():
    m = mode_metrics(_around(RING.means[:1], 1000, 0.005), RING.means, RING.std)
    assert m["modes"] == 1 and m["hq_share"] == 1.0
    assert m["reverse_kl"] == pytest.approx(np.log(8))  # KL(delta_0 || uniform over 8)


def test_two_of_eight_modes_with_scipy_reference():
    samples = np.concatenate([_around(RING.means[:1], 300, 0.001), _around(RING.means[3:4], 100, 0.001)])
    m = mode_metrics(samples, RING.means, RING.std)
    assert m["modes"] == 2
    assert m["reverse_kl"] == pytest.approx(stats.entropy([0.75, 0, 0, 0.25, 0, 0, 0, 0], [1 / 8] * 8))
    assert m["reverse_kl"] == pytest.approx(0.75 * np.log(6) + 0.25 * np.log(2))


def test_off_mode_noise_is_not_high_quality():
    noise = RNG.uniform(-0.6, 0.6, size=(1000, 2))  # inside the ring, far from every mode
    m = mode_metrics(noise, RING.means, RING.std)
    assert m["modes"] == 0 and m["hq_share"] == 0.0 and np.isnan(m["reverse_kl"])
    half = mode_metrics(np.concatenate([noise, _around(RING.means, 1000, 0.001)]), RING.means, RING.std)
    assert half["hq_share"] == pytest.approx(0.5) and half["modes"] == 8


def test_sliced_wasserstein_of_a_shift():
    """Shifting a set by v moves every projection on direction u by <v, u>: the mean over directions
    of |<v, u>| is |v| * 2 / pi."""
    x = RNG.standard_normal((5000, 2))
    v = np.array([0.3, -0.4])
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x + v) == pytest.approx(np.linalg.norm(v) * 2 / np.pi, rel=0.01)
    assert sliced_wasserstein(x, x + v) == pytest.approx(sliced_wasserstein(x + v, x))


@pytest.mark.parametrize(("n", "m"), [(3000, 3000), (3000, 2000)])
def test_sliced_wasserstein_is_scipys_w1_per_direction(n, m):
    # the independent reference: scipy's 1D W1 on each projection (equal sizes take the sorted form, which
    # must agree; unequal ones must still reach scipy's path, not the sorted form, which needs equal sizes)
    from scipy import stats

    from ganlab.metrics.metrics_2d import SLICE_DIRECTIONS

    x, y = RNG.standard_normal((n, 2)) * [1.0, 2.0], RNG.uniform(-1, 3, (m, 2))
    angles = np.pi * np.arange(SLICE_DIRECTIONS) / SLICE_DIRECTIONS
    axes = np.stack([np.cos(angles), np.sin(angles)])
    px, py = x @ axes, y @ axes
    expected = np.mean([stats.wasserstein_distance(px[:, k], py[:, k]) for k in range(SLICE_DIRECTIONS)])
    assert sliced_wasserstein(x, y) == pytest.approx(expected, rel=1e-9)


def test_off_density_share():
    weights = np.zeros((2, 2))
    weights[0, 0] = 1.0  # top-left quarter of [0, 1]^2
    image = PictureDensity(weights)
    points = np.array([[0.25, 0.75], [0.75, 0.75], [0.25, 0.25], [2.0, 0.5]])
    assert off_density_share(points, image) == pytest.approx(0.75)


def test_sample_metrics_for_a_mixture_use_the_paper_sample_count():
    samples = np.concatenate([_around(RING.means[:1], 2500, 0.001), _around(RING.means, 2500, 0.001)])
    reference = RING.sample(5000).numpy()
    m = sample_metrics(samples, RING, reference)
    assert m["modes"] == 1 and m["modes_full"] == 8  # the paper metric reads the first 2,500 only
    assert "modes 1" in headline(m) and "SW1" in headline(m)


def test_the_progress_line_says_why_reverse_kl_has_no_value():
    """Before any generated sample is near a mode, the reverse KL is undefined: the line printed "nan"."""
    far = np.full((3000, 2), 50.0, dtype=np.float32)
    m = sample_metrics(far, RING, RING.sample(5000).numpy())
    assert np.isnan(m["reverse_kl"]) and "rev-KL - (no HQ sample)" in headline(m) and "nan" not in headline(m)
