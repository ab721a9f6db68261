"""Training behaviour: seeded convergence of the default recipe, determinism, tracking URIs, stabilisers."""

import math

import pytest
from mlflow.tracking import MlflowClient

from ganlab.config.compose import compose_config
from ganlab.errors import ConfigError
from ganlab.training.runner import run_training

FAST = ["train.eval_every=25", "train.plot_every=1000", "train.eval_samples=5000"]


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(tracking_uri):
    cfg = compose_config(["train.iterations=60", *FAST])
    first = run_training(cfg, verbose=False).history
    second = run_training(cfg, verbose=False).history
    assert first == second
    other = run_training(compose_config(["train.iterations=60", "train.seed=1", *FAST]), verbose=False).history
    assert other != first


def test_tracking_uri_key_overrides_the_environment(tracking_uri, tmp_path):
    own = f"sqlite:///{tmp_path / 'own.db'}"
    result = run_training(compose_config(["train.iterations=2", f"tracking.uri={own}", *FAST]), verbose=False)
    assert MlflowClient(own).get_run(result.run_id).info.status == "FINISHED"
    assert (tmp_path / "own.db").exists()


def test_missing_gpu_is_a_clear_error(tracking_uri):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for name in ("gpu", "cuda"):
        with pytest.raises(ConfigError, match=f"train.accelerator='{name}' but no CUDA device"):
            run_training(compose_config([f"train.accelerator={name}"]), verbose=False)


def test_cuda_is_the_gpu_by_its_other_name(monkeypatch):
    import torch

    from ganlab.training.accelerators import resolve_accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [resolve_accelerator(n) for n in ("cuda", "gpu", "auto", "cpu")] == ["gpu", "gpu", "gpu", "cpu"]


@pytest.mark.slow
def test_the_mixture_recipe_places_both_modes_when_seeded(tracking_uri):
    """`data=mixture_1d` as typed places both modes (at -2 and 2, weights 1/2): its recipe measured KS
    0.010-0.028 on seeds 0-6. A collapsed G (one mode, or a point between them: KS 0.5) fails. Seed 4
    was not used to choose the recipe (it scores ~0.02 at 4,000 iterations too)."""
    result = run_training(compose_config(["data=mixture_1d", "train.seed=4", "train.eval_every=2000",
                                          "train.plot_every=8000"]), verbose=False)
    m = result.metrics
    assert m["ks"] < 0.03, m
    assert abs(m["mean"]) < 0.1 and abs(m["std"] - 2.06) < 0.1, m  # sqrt(0.5^2 + 2^2) = 2.06


@pytest.mark.slow
def test_sgd_trains_the_default_recipe_when_seeded(tracking_uri):
    """`optim=sgd` as typed must train the default recipe well: ganlab's SGD (lr 1e-2, momentum 0.5,
    chosen on seeds 0-2) measured KS 0.0049-0.0081 on held-out seeds 3-7 and 0.0046 on this seed 8;
    S1's settings (lr 1e-3, momentum 0.9), the group's old defaults, left it at 0.04-0.10."""
    result = run_training(compose_config(["optim=sgd", "train.seed=8", "train.eval_every=1000",
                                          "train.plot_every=4000"]), verbose=False)
    m = result.metrics
    assert m["ks"] < 0.02, m
    assert abs(m["mean"] - 4.0) < 0.1 and abs(m["std"] - 1.25) < 0.1, m


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["train.r1_gamma=1.0"], ["optim.schedule=linear", "train.ema_decay=0"],
                                   ["optim=sgd", "optim.schedule=exponential"], ["train.loss=bce_saturating"],
                                   ["train.label_smoothing=0.1"], ["data=mixture_1d"], ["noise=normal"]])
def test_options_train_to_finite_metrics(extra, tracking_uri):
    result = run_training(compose_config(["train.iterations=30", *FAST, *extra]), verbose=False)
    assert all(math.isfinite(v) for v in result.metrics.values())


def test_default_recipe_converges_when_seeded(tracking_uri):
    """A short seeded run of the default recipe must get close to N(4, 1.25).

    An untrained G scores KS ~1.0 and S1's best faithful reproduction (devnag_moments) about 0.09
    after ~200k optimizer steps. With 3,000 of the recipe's 8,000 iterations, seeds 0-3 measured
    KS 0.033-0.061 (mean within 0.14 of 4, std within 0.07 of 1.25), so KS < 0.1 fails only if
    training is broken, while a collapsed or unconverged generator (KS > 0.25 at 1,500) fails it.
    """
    result = run_training(compose_config(["train.iterations=3000", "train.eval_every=1000",
                                          "train.plot_every=3000"]), verbose=False)
    m = result.metrics
    assert m["ks"] < 0.1, m
    assert abs(m["mean"] - 4.0) < 0.2 and abs(m["std"] - 1.25) < 0.15, m


@pytest.mark.slow
def test_ring8_recipe_captures_more_modes_than_a_collapsing_gan(tracking_uri):
    """A short seeded run of ganlab's ring8 recipe covers the ring; a GAN whose G learns 100x faster
    than its D chases D's current favourite point and collapses.

    Measured at 1,500 iterations, seeds 0 and 1: the recipe 8 and 8 modes; the collapsing GAN 0 and
    1 (it sits between modes or on one). Counting needs only one high-quality sample per mode, so 7
    is a safe floor for a working run and 3 a safe ceiling for a collapsed one.
    """
    short = ["train.iterations=1500", "train.eval_every=500", "train.plot_every=1500", "train.eval_samples=2500"]
    recipe = run_training(compose_config(["experiment=ring8_ganlab", *short]), verbose=False).metrics
    collapsing = run_training(compose_config([
        "data=ring8", "noise=normal", "model=vanilla", "train.batch_size=128", "train.ema_decay=0",
        "optim.schedule=none", "optim.g_lr=1e-2", "optim.d_lr=1e-4",
        "optim.short_run_reference=4000", *short]), verbose=False).metrics  # as measured: x2.67 (typed rates keep it
    # only when the boost is typed too; at the raw rates this seed found 4 modes)
    assert recipe["modes"] >= 7, recipe
    assert collapsing["modes"] <= 3, collapsing
    assert recipe["modes"] > collapsing["modes"]
