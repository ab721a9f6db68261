"""Batched 1D metrics against scipy member by member (the single-run metrics' own definitions)."""

import numpy as np
import pytest
import torch

from ganlab.data.targets_1d import Gaussian1D, Mixture1D
from ganlab.metrics.metrics_1d import metrics_1d
from ganlab.population.batched_metrics import metrics_1d_batched


@pytest.mark.parametrize("target", [Gaussian1D(4.0, 1.25), Mixture1D([0.2, 0.8], [-2.0, 1.0], [0.3, 0.7])])
def test_each_member_matches_the_scipy_metrics(target):
    rng = np.random.default_rng(0)
    members = np.stack([rng.normal(4.0, 1.25, 3000), rng.uniform(0, 8, 3000), rng.standard_t(3, 3000),
                        np.full(3000, 4.0) + rng.normal(0, 1e-3, 3000)])
    batched = metrics_1d_batched(torch.from_numpy(members).float(), target)
    for k, x in enumerate(members.astype(np.float32)):
        reference = metrics_1d(x, target)
        for name, value in reference.items():
            assert batched[name][k] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, k)


def test_a_member_with_nan_samples_gets_nan_and_the_others_do_not():
    x = torch.randn(2, 100)
    x[1, 5] = float("nan")
    out = metrics_1d_batched(x, Gaussian1D(0.0, 1.0))
    assert np.isfinite(out["ks"][0]) and np.isnan(out["ks"][1])


def _members_2d(target, n):
    """Four members: on target, near-collapsed on one mode, spread wide, and half on target."""
    rng = np.random.default_rng(1)
    good = target.sample(n, generator=torch.Generator().manual_seed(2)).numpy()
    one = target.sample(n, generator=torch.Generator().manual_seed(3)).numpy()[:1] + rng.normal(0, 0.01, (n, 2))
    wide = rng.normal(0, 2, (n, 2))
    half = np.concatenate([good[: n // 2], wide[: n - n // 2]])
    return np.stack([good, one, wide, half]).astype(np.float32)


@pytest.mark.parametrize("overrides", [["data=ring8"], ["data=grid25"], ["data=image_density"]])
def test_each_member_matches_the_single_run_2d_metrics(overrides):
    from ganlab.config.compose import compose_config
    from ganlab.data.targets import build_target
    from ganlab.metrics.metrics_2d import metrics_2d
    from ganlab.population.batched_metrics import metrics_2d_batched

    target = build_target(compose_config(overrides).data)
    n = 3000
    reference = target.sample(n, generator=torch.Generator().manual_seed(9)).numpy()
    members = _members_2d(target, n)
    batched = metrics_2d_batched(torch.from_numpy(members), target, reference)
    for k, x in enumerate(members):
        single = metrics_2d(x, target, reference)
        assert set(single) == set(batched)
        for name, value in single.items():
            if np.isnan(value):
                assert np.isnan(batched[name][k]), (name, k)
            else:
                assert batched[name][k] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, k)


def test_each_member_matches_the_single_run_metrics_per_class_of_a_conditional_target():
    # the evaluator asks a conditional G for the reference's classes: per-class metrics compare like for like
    from ganlab.config.compose import compose_config
    from ganlab.data.targets import build_target
    from ganlab.metrics.metrics_2d import metrics_2d
    from ganlab.population.batched_metrics import metrics_2d_batched

    target = build_target(compose_config(["experiment=cgan_two_blobs"]).data)
    n = 3000
    reference, labels = target.sample_with_labels(n, generator=torch.Generator().manual_seed(9))
    reference, labels = reference.numpy(), labels.numpy()
    good = np.empty((n, 2), np.float32)  # a perfect conditional G: class k's picture for every label k
    for k, image in enumerate(target.images):
        good[labels == k] = image.sample(int((labels == k).sum()), generator=torch.Generator().manual_seed(k)).numpy()
    swapped = good.copy()  # each class's samples where the other class lives: right overall, wrong per class
    swapped[:, 0] = 1.0 - swapped[:, 0]
    members = np.stack([good, swapped, _members_2d(target, n)[2]]).astype(np.float32)
    batched = metrics_2d_batched(torch.from_numpy(members), target, reference, labels)
    assert {"sliced_w1_class0", "off_density_class1"} <= set(batched)
    for k, x in enumerate(members):
        single = metrics_2d(x, target, reference, labels, labels)
        assert set(single) == set(batched)
        for name, value in single.items():
            assert batched[name][k] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, k)
    assert batched["sliced_w1_class0"][1] > 5 * batched["sliced_w1_class0"][0]
