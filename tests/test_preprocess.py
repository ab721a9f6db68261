"""The S1 batch transforms against independent references (numpy / scipy.stats)."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats

from ganlab.preprocess import PREPROCESSES, build_preprocess


def make(name: str, batch_size: int, dim: int, keep_raw: bool = True, **options):
    """The transform as a config node selects it (``options``: group_size, or m for pack)."""
    return build_preprocess(OmegaConf.create({"name": name, "keep_raw": keep_raw, **options}), batch_size, dim)


def test_moments_match_scipy():
    rng = np.random.default_rng(0)
    batches = rng.gamma(2.0, 1.5, size=(3, 500))  # skewed, so every moment is non-trivial
    x = torch.tensor(batches.reshape(-1, 1), dtype=torch.float64)
    out = make("moments", 500, 1)(x).numpy()
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out[:, 0], batches.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(out[:, 1], batches.std(axis=1), rtol=1e-10)
    np.testing.assert_allclose(out[:, 2], stats.skew(batches, axis=1), rtol=1e-8)
    np.testing.assert_allclose(out[:, 3], stats.kurtosis(batches, axis=1), rtol=1e-8)


@pytest.mark.parametrize(
    ("name", "keep_raw", "size"),
    [("none", True, 1), ("raw", True, 8), ("diffs", True, 16), ("diffs", False, 8),
     ("variances", True, 16), ("variances", False, 8), ("moments", True, 4)],
)
def test_declared_size_matches_output(name, keep_raw, size):
    transform = make(name, 8, 1, keep_raw)
    assert transform.out_features() == size
    out = transform(torch.randn(24, 1))
    groups = 24 if name == "none" else 3
    assert out.shape == (groups, size)
    assert transform.groups(24) == groups


def test_diffs_and_variances_values():
    x = torch.tensor([[1.0], [2.0], [3.0], [6.0]])
    diffs = make("diffs", 4, 1)(x)
    variances = make("variances", 4, 1, keep_raw=False)(x)
    np.testing.assert_allclose(diffs.numpy(), [[1, 2, 3, 6, -2, -1, 0, 3]])
    np.testing.assert_allclose(variances.numpy(), [[4, 1, 0, 9]])


def test_raw_is_the_batch_as_one_vector():
    x = torch.arange(6.0).unsqueeze(1)
    np.testing.assert_array_equal(make("raw", 3, 1)(x).numpy(), [[0, 1, 2], [3, 4, 5]])


def test_batch_transform_rejects_partial_batches():
    with pytest.raises(ValueError, match="multiple of batch_size=4"):
        make("raw", 4, 1)(torch.randn(6, 1))


def test_moments_stay_finite_when_the_batch_collapses():
    out = make("moments", 5, 1)(torch.full((5, 1), 4.0))
    assert torch.isfinite(out).all()


def test_pack_concatenates_m_samples_into_one_input():
    pack = make("pack", batch_size=12, dim=2, m=4)
    x = torch.arange(24, dtype=torch.float32).reshape(12, 2)
    out = pack(x)
    assert out.shape == (3, 8) and pack.out_features() == 8 and pack.groups(12) == 3
    torch.testing.assert_close(out[1], x[4:8].flatten())


def test_registry_lists_every_option_the_config_group_offers():
    from ganlab.config.compose import group_options

    options = set(group_options("preprocess")) - {"auto"}  # auto is resolved at composition
    assert options == set(PREPROCESSES.names)
