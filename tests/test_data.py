"""Targets and noise samplers: sample moments, exact CDFs, reproducibility."""

import numpy as np
import pytest
import torch
from scipy import stats

from ganlab.data.noise import NormalNoise, StratifiedNoise, UniformNoise
from ganlab.data.targets_1d import Gaussian1D, Mixture1D


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_gaussian_samples_and_exact_cdf():
    target = Gaussian1D(4.0, 1.25)
    x = target.sample(200_000, generator=_gen()).numpy().ravel()
    assert abs(x.mean() - 4.0) < 0.01 and abs(x.std() - 1.25) < 0.01
    grid = np.linspace(0, 8, 17)
    np.testing.assert_allclose(target.cdf(grid), stats.norm(4, 1.25).cdf(grid))
    assert stats.kstest(x, target.cdf).pvalue > 1e-3


def test_mixture_moments_cdf_and_quantiles():
    target = Mixture1D([0.2, 0.8], [-2.0, 3.0], [0.5, 1.0])
    assert target.mean == pytest.approx(0.2 * -2 + 0.8 * 3)
    assert target.std == pytest.approx(np.sqrt(0.2 * 4.25 + 0.8 * 10 - 2.0**2))
    x = target.sample(200_000, generator=_gen()).numpy().ravel()
    assert abs(x.mean() - target.mean) < 0.02 and abs(x.std() - target.std) < 0.02
    assert abs(np.mean(x < 0.5) - target.cdf(0.5)) < 0.005
    q = target.quantiles(1000)
    np.testing.assert_allclose(target.cdf(q), (np.arange(1000) + 0.5) / 1000, atol=1e-5)


def test_gaussian_quantiles_are_the_ppf():
    target = Gaussian1D(-2.0, 0.3)
    np.testing.assert_allclose(target.quantiles(4), stats.norm(-2, 0.3).ppf([0.125, 0.375, 0.625, 0.875]))


def test_uniform_noise_range_and_moments():
    z = UniformNoise(2, -1.0, 3.0).sample(100_000, generator=_gen()).numpy()
    assert z.shape == (100_000, 2)
    assert z.min() >= -1.0 and z.max() <= 3.0
    assert abs(z.mean() - 1.0) < 0.02 and abs(z.var() - 16 / 12) < 0.02


def test_normal_noise_moments():
    z = NormalNoise(1, 1.0, 2.0).sample(100_000, generator=_gen()).numpy()
    assert abs(z.mean() - 1.0) < 0.02 and abs(z.std() - 2.0) < 0.02


def test_stratified_noise_is_an_even_grid_plus_jitter():
    z = StratifiedNoise(1, -8.0, 8.0, 0.01).sample(9, generator=_gen()).numpy().ravel()
    jitter = z - np.linspace(-8, 8, 9)
    assert np.all((jitter >= 0) & (jitter <= 0.01))


def test_a_stratified_batch_draws_the_stream_it_always_drew():
    # one batch: a grid, one permutation of it per extra dimension, then the jitter (runs stay reproducible
    # across the change that gave population members a grid each)
    gen = _gen()
    grid = torch.linspace(-1, 1, 7)
    shuffled = grid[torch.randperm(7, generator=gen)]
    expected = torch.stack([grid, shuffled], dim=1) + torch.rand(7, 2, generator=gen) * 0.1
    torch.testing.assert_close(StratifiedNoise(2, -1, 1, 0.1).sample(7, generator=_gen()), expected, rtol=0, atol=0)


def test_stratified_batches_are_each_a_whole_grid():
    # population training draws every member's batch at once: each must span the range, not a k-th of it
    z = StratifiedNoise(2, -8.0, 8.0, 0.01).sample_batches(3, 9, generator=_gen()).numpy()
    assert z.shape == (3, 9, 2)
    grid = np.linspace(-8, 8, 9)
    for batch in z:  # the first column is the grid in order, the second a shuffled copy of it
        for jitter in (batch[:, 0] - grid, np.sort(batch[:, 1]) - grid):
            assert np.all((jitter >= 0) & (jitter <= 0.01))
    assert not np.array_equal(z[0, :, 1], z[1, :, 1])  # each batch shuffled its own way


@pytest.mark.parametrize("noise", [UniformNoise(1, 0, 1), NormalNoise(1, 0, 1), StratifiedNoise(2, -1, 1, 0.1)])
def test_independent_batches_are_one_draw_laid_out_k_by_n(noise):
    z = noise.sample_batches(3, 50, generator=_gen())
    assert z.shape == (3, 50, noise.dim) and torch.isfinite(z).all()
    if not isinstance(noise, StratifiedNoise):
        torch.testing.assert_close(z.reshape(150, noise.dim), noise.sample(150, generator=_gen()))


@pytest.mark.parametrize("noise", [UniformNoise(1, 0, 1), NormalNoise(1, 0, 1), StratifiedNoise(2, -1, 1, 0.1)])
def test_a_seeded_generator_reproduces_noise(noise):
    torch.testing.assert_close(noise.sample(50, generator=_gen(3)), noise.sample(50, generator=_gen(3)))
