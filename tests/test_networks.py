"""Networks built from config: sizes, activations, init, minibatch discrimination."""

import pytest
import torch
from omegaconf import OmegaConf

from ganlab.config.compose import compose_config
from ganlab.nets.minibatch_discrimination import MinibatchDiscrimination
from ganlab.nets.mlp import mlp
from ganlab.training.runner import build_module


def test_mlp_layers_follow_config():
    torch.manual_seed(0)  # the std check below reads 35 random weights (it failed about 1 run in 100 unseeded)
    net = mlp(3, [5, 7], ["tanh", "elu"], 2, output_activation="sigmoid", init="normal", init_std=1.0)
    kinds = [type(layer).__name__ for layer in net]
    assert kinds == ["Linear", "Tanh", "Linear", "ELU", "Linear", "Sigmoid"]
    assert net[0].weight.shape == (5, 3) and net[4].weight.shape == (2, 7)
    assert torch.all(net[0].bias == 0)
    assert 0.7 < net[2].weight.std().item() < 1.3


def test_minibatch_layer_matches_a_direct_computation():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(4, kernels=3, kernel_dim=2, init_std=0.5)
    f = torch.randn(6, 4)
    out = layer(f)
    assert out.shape == (6, 7)
    m = (f @ layer.T).view(6, 3, 2)
    for i in range(6):
        for k in range(3):
            expected = sum(torch.exp(-(m[i, k] - m[j, k]).abs().sum()) for j in range(6))
            assert out[i, 4 + k].item() == pytest.approx(expected.item(), rel=1e-5)


def _broadcast_closeness(m: torch.Tensor) -> torch.Tensor:
    """The layer as S3 writes it: the (B, B, K, C) differences materialised, then summed."""
    return torch.exp(-(m.unsqueeze(-4) - m.unsqueeze(-3)).abs().sum(dim=-1)).sum(dim=-3)


def test_minibatch_layer_equals_the_broadcast_formula_in_values_and_gradients():
    torch.manual_seed(1)
    layer = MinibatchDiscrimination(5, kernels=4, kernel_dim=3, init_std=0.7).double()
    f = torch.randn(3, 9, 5, dtype=torch.float64, requires_grad=True)  # three independent batches of 9
    out = layer(f)[..., 5:]
    expected = _broadcast_closeness(layer._project(f))
    torch.testing.assert_close(out, expected)
    grad, = torch.autograd.grad((out * torch.arange(4.0, dtype=torch.float64)).sum(), f)
    grad_expected, = torch.autograd.grad((expected * torch.arange(4.0, dtype=torch.float64)).sum(), f)
    torch.testing.assert_close(grad, grad_expected)
    context = torch.randn(7, 5, dtype=torch.float64)
    joined = torch.cat([f[0, :1], context])  # `against`: one row judged in a batch with the context
    torch.testing.assert_close(layer.against(f[0, :1], context)[:, 5:],
                               _broadcast_closeness(layer._project(joined))[:1])


def test_an_r1_penalty_trains_through_the_twice_differentiable_minibatch_layer():
    """torch has no second derivative of cdist, so R1 (a gradient of D's input gradient) needs the
    broadcast form; it must give the fast form's values, and its second derivative the reference's."""
    torch.manual_seed(2)
    fast = MinibatchDiscrimination(4, kernels=3, kernel_dim=2, init_std=0.7).double()
    twice = MinibatchDiscrimination(4, kernels=3, kernel_dim=2, twice_differentiable=True).double()
    twice.load_state_dict(fast.state_dict())
    x = torch.randn(2, 8, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(twice(x), fast(x))

    def penalty(layer: MinibatchDiscrimination, closeness=None) -> torch.Tensor:
        out = layer(x)[..., 4:] if closeness is None else closeness(layer._project(x))
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return grad.pow(2).sum()

    with pytest.raises(NotImplementedError, match="cdist"):
        torch.autograd.grad(penalty(fast), fast.T)
    (second,) = torch.autograd.grad(penalty(twice), twice.T)
    (expected,) = torch.autograd.grad(penalty(twice, _broadcast_closeness), twice.T)
    torch.testing.assert_close(second, expected)
    assert second.abs().sum() > 0


def test_minibatch_model_with_r1_is_built_twice_differentiable():
    """`model=minibatch train.r1_gamma=1` failed at its first step with torch's NotImplementedError."""
    module = build_module(compose_config(["model=minibatch", "train.r1_gamma=1.0"]))
    assert module.discriminator.minibatch.twice_differentiable
    assert not build_module(compose_config(["model=minibatch"])).discriminator.minibatch.twice_differentiable


def _largest_saved_for_backward(fn) -> int:
    """The element count of the largest tensor autograd keeps for ``fn``'s backward pass."""
    sizes: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn().sum().backward()
    return max(sizes)


def test_minibatch_layer_never_holds_the_batch_by_batch_differences():
    """Why the layer is fast at batch 1,024: it keeps at most (B, B, K) distances for backward, never
    the broadcast form's (B, B, K, C) differences (C = kernel_dim times more memory). The speed itself
    is measured in `make bench ARGS="--only minibatch"` (about 3x on one idle core); a wall-clock race in
    the suite failed on CI's busy workers."""
    torch.manual_seed(0)
    batch, kernels, kernel_dim = 256, 5, 3
    layer = MinibatchDiscrimination(64, kernels=kernels, kernel_dim=kernel_dim)
    f = torch.randn(batch, 64, requires_grad=True)
    assert _largest_saved_for_backward(lambda: layer(f)) <= batch * batch * kernels
    # the reference form does hold them: the measurement sees what it should
    assert _largest_saved_for_backward(lambda: _broadcast_closeness(layer._project(f))) \
        >= batch * batch * kernels * kernel_dim


def test_minibatch_features_expose_a_collapsed_batch():
    layer = MinibatchDiscrimination(2, kernels=4, kernel_dim=3, init_std=1.0)
    collapsed = layer(torch.ones(8, 2))[:, 2:]
    torch.testing.assert_close(collapsed, torch.full((8, 4), 8.0))  # every sample is close to all 8


@pytest.mark.parametrize(
    ("overrides", "d_in"),
    [([], 128), (["model=vanilla"], 1), (["experiment=devnag_moments"], 4), (["experiment=devnag_raw"], 500),
     (["experiment=devnag_diffs"], 1000), (["experiment=devnag_variances", "preprocess.keep_raw=false"], 500),
     (["experiment=aylien_minibatch"], 1)],
)
def test_discriminator_input_size_follows_preprocess(overrides, d_in, tracking_uri):
    module = build_module(compose_config(overrides))
    assert module.discriminator.trunk[0].in_features == d_in


def test_aylien_minibatch_is_s3s_architecture():
    cfg = compose_config(["experiment=aylien_minibatch"])
    module = build_module(cfg)
    d = module.discriminator
    assert [layer.out_features for layer in d.trunk if isinstance(layer, torch.nn.Linear)] == [8, 8]
    assert d.minibatch is not None and d.head.in_features == 8 + 5
    assert OmegaConf.select(cfg, "train.loss") == "clamped_log"


def test_in_context_scores_each_sample_as_a_member_of_the_batch():
    torch.manual_seed(0)
    module = build_module(compose_config(["model=minibatch", "train.batch_size=8"]))
    d = module.discriminator
    context, x = torch.randn(7, 1), torch.randn(3, 1)
    expected = torch.cat([d(torch.cat([x[i:i + 1], context]))[:1] for i in range(3)])
    torch.testing.assert_close(d.in_context(x, context), expected)


def test_batched_minibatch_scoring_equals_one_batch_at_a_time():
    torch.manual_seed(0)
    d = build_module(compose_config(["model=minibatch", "train.batch_size=4"])).discriminator
    x = torch.randn(12, 1)
    expected = torch.cat([d(x[i:i + 4]) for i in range(0, 12, 4)])
    torch.testing.assert_close(d(x, batch=4), expected)


def test_conditional_labels_reach_both_networks():
    """One training step of the cGAN: G's and D's first layers see the one-hot class of each sample."""
    cfg = compose_config(["experiment=cgan_two_blobs", "train.batch_size=64"])
    module = build_module(cfg)
    g_first, d_first = module.generator[0], module.discriminator.trunk[0]
    assert g_first.in_features == 2 + 2 and d_first.in_features == 2 + 2
    seen = {"g": [], "d": []}
    g_first.register_forward_hook(lambda m, inputs, out: seen["g"].append(inputs[0].detach()))
    d_first.register_forward_hook(lambda m, inputs, out: seen["d"].append(inputs[0].detach()))

    z = torch.randn(5, 2)
    labels = torch.tensor([0, 1, 1, 0, 1])
    fake = module.generate(z, labels)
    torch.testing.assert_close(seen["g"][-1][:, 2:], torch.nn.functional.one_hot(labels, 2).float())
    module.discriminate(fake, labels)
    torch.testing.assert_close(seen["d"][-1][:, 2:], torch.nn.functional.one_hot(labels, 2).float())
    # the class changes what G makes from the same noise and what D thinks of the same point
    assert not torch.allclose(module.generate(z, labels), module.generate(z, 1 - labels))
    assert not torch.allclose(module.discriminate(fake, labels), module.discriminate(fake, 1 - labels))
    with pytest.raises(ValueError, match="one label per sample"):
        module.generate(z)


def test_unconditional_model_on_labelled_data_ignores_labels():
    module = build_module(compose_config(["experiment=gan2d_two_blobs"]))
    assert module.generator[0].in_features == 2 and module.discriminator.trunk[0].in_features == 2


@pytest.mark.parametrize(("overrides", "joint"), [
    (["experiment=devnag_moments"], True),  # a batch D: one logit per group of 500
    (["model=vanilla"], True),
    (["experiment=ring8_pacgan"], True),  # packed inputs
    (["model=conditional", "data=conditional_image_density"], True),
    (["model=minibatch", "train.batch_size=64"], False),  # the minibatch layer compares the samples it gets
    (["model=vanilla", "model.d.dropout=0.2"], False),  # dropout draws a mask per call
])
def test_real_and_fake_are_judged_in_one_d_call_only_where_the_logits_stay_the_same(overrides, joint):
    torch.manual_seed(0)
    module = build_module(compose_config(overrides))
    assert module.discriminator.judges_inputs_apart == joint
    n = module.train_cfg.batch_size
    real, real_labels = module.target.sample_with_labels(n)
    fake_labels = module.fake_labels(n)
    with torch.no_grad():
        fake = module.generate(module.noise.sample(n), fake_labels)
    module.discriminator.eval()  # dropout off, so the separate calls are deterministic to compare with
    together = module._judge(real, real_labels, fake, fake_labels)
    apart = module.discriminate(real, real_labels), module.discriminate(fake, fake_labels)
    for a, b in zip(together, apart, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_g_step_leaves_d_without_gradients_and_gives_g_the_full_ones():
    torch.manual_seed(0)
    module = build_module(compose_config(["model=vanilla"]))
    z = module.noise.sample(64)
    loss = module._loss.generator(module.discriminate(module.generate(z)))
    loss.backward(inputs=module._g_params)
    assert all(p.grad is None for p in module.discriminator.parameters())
    expected = torch.autograd.grad(module._loss.generator(module.discriminate(module.generate(z))),
                                   list(module.generator.parameters()))
    for p, g in zip(module.generator.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_an_unconditional_model_on_labelled_data_judges_real_and_fake_together():
    """Image datasets hand D real labels even when the model ignores classes."""
    module = build_module(compose_config(["experiment=goodfellow_digits"]))
    module.discriminator.eval()
    real, real_labels = module.target.sample_with_labels(8)
    fake = torch.zeros_like(real)
    together = module._judge(real, real_labels, fake, None)
    torch.testing.assert_close(together[0], module.discriminate(real, real_labels))


def test_fourier_features_keep_the_point_and_add_sines_and_cosines_of_fixed_projections():
    from ganlab.nets.fourier_features import FourierFeatures

    torch.manual_seed(0)
    lift = FourierFeatures(2, features=5, scale=3.0)
    x = torch.rand(7, 2)
    out = lift(x)
    assert out.shape == (7, 12) and lift.out_features() == 12
    angles = x @ lift.projection
    torch.testing.assert_close(out, torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1))
    assert "projection" in lift.state_dict()  # fixed, and saved with D's weights
    assert not any(p is lift.projection for p in lift.parameters())


def test_picture_recipe_lifts_each_point_before_packing(tracking_uri):
    cfg = compose_config(["data=image_density"])
    module = build_module(cfg)
    d = module.discriminator
    assert d.lift is not None and d.lift.features == 64
    assert d.trunk[0].in_features == cfg.preprocess.m * (2 + 2 * 64)  # packs of m lifted points
    x = torch.rand(8, 2)
    assert d(x).shape == (8 // cfg.preprocess.m, 1)
