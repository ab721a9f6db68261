"""Stacked networks compute exactly what each member's own module computes, and give members back."""

import pytest
import pytorch_lightning as pl
import torch

from ganlab.config.compose import compose_config
from ganlab.errors import ConfigError
from ganlab.population.stacked_nets import NarrowProduct, StackedLinear, StackedNets
from ganlab.training.runner import build_module

CASES = [[], ["data=ring8"], ["data=ring8", "model.standardize=true"], ["data=image_density"],
         ["model=vanilla"], ["model=devnag", "preprocess=moments"],
         ["model=devnag", "preprocess=diffs", "train.batch_size=64"],
         ["model=minibatch", "train.batch_size=64"], ["model=minibatch", "data=ring8", "train.r1_gamma=1"]]


def _members(overrides, k=3):
    cfg = compose_config(overrides)
    out = []
    for seed in range(k):
        pl.seed_everything(seed, verbose=False)
        out.append(build_module(cfg))
    return cfg, out


@pytest.mark.parametrize("overrides", CASES, ids=lambda o: " ".join(o) or "default")
def test_stacked_g_and_d_equal_each_members_own_module(overrides):
    cfg, members = _members(overrides)
    g, d = StackedNets([m.generator for m in members]), StackedNets([m.discriminator for m in members])
    z = torch.randn(3, cfg.train.batch_size, cfg.noise.dim)
    x = torch.randn(3, cfg.train.batch_size, members[0].target.dim)
    fake, logits = g(z), d(x)
    for k, m in enumerate(members):
        torch.testing.assert_close(fake[k], m.generator(z[k]))
        torch.testing.assert_close(logits[k], m.discriminator(x[k]))


def test_tanh_between_layers_runs_as_a_folded_sigmoid_with_each_members_own_gradient():
    # the default G: Linear, tanh, Linear, tanh, Linear (without the map to N(4, 1.25)'s units, whose
    # shift makes the squared outputs' float32 gradients differ in their last digits between the two sums)
    cfg, members = _members(["model.standardize=false"])
    g = StackedNets([m.generator for m in members])
    assert not any(isinstance(m, torch.nn.Tanh) for m in g.net.modules())
    z = torch.randn(3, 64, cfg.noise.dim)
    (g(z) ** 2).sum().backward()
    for k, m in enumerate(members):
        (m.generator(z[k]) ** 2).sum().backward()
        own = torch.cat([torch.cat([layer.weight.grad.t().reshape(-1), layer.bias.grad])
                         for layer in m.generator.modules() if isinstance(layer, torch.nn.Linear)])
        torch.testing.assert_close(g.flat.grad[k], own, rtol=1e-4, atol=1e-5)


def test_a_member_comes_back_as_a_plain_module_with_its_weights():
    cfg, members = _members(["data=image_density"])  # D with a Fourier lift: a stacked buffer
    d = StackedNets([m.discriminator for m in members])
    for k, m in enumerate(members):
        back = d.member(k)
        for (name, mine), theirs in zip(back.state_dict().items(), m.discriminator.state_dict().values(), strict=True):
            assert torch.equal(mine, theirs), name


def test_gradients_stay_within_their_member():
    cfg, members = _members(["model=vanilla"])
    g = StackedNets([m.generator for m in members])
    out = g(torch.randn(3, 16, cfg.noise.dim))
    out[1].sum().backward()
    (flat,) = g.parameters()  # one [K, P] tensor: member k's weights are row k
    assert torch.count_nonzero(flat.grad[0]) == 0 and torch.count_nonzero(flat.grad[2]) == 0
    assert torch.count_nonzero(flat.grad[1]) > 0


class _Scale(torch.nn.Module):
    """A module with a weight of its own that does not say it takes its members' weights."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale


def test_a_module_with_weights_it_cannot_stack_is_a_clear_error():
    nets = [torch.nn.Sequential(torch.nn.Linear(2, 3), _Scale()) for _ in range(2)]
    with pytest.raises(ConfigError, match=r"_Scale holds weights other than Linear layers \(scale\)"):
        StackedNets(nets)


@pytest.mark.parametrize("r1", [False, True], ids=["cdist", "broadcast form"])
def test_a_minibatch_d_judges_each_members_batches_and_steps_each_members_own_weights(r1):
    # the layer's T is lent as [K, in, kernels * kernel_dim]: logits in batches of 32, and one SGD step on
    # the stacked weights, must be each member's own (T's gradient included, in the flat row's order)
    cfg, members = _members(["model=minibatch", "train.batch_size=32", f"train.r1_gamma={int(r1)}"])
    d = StackedNets([m.discriminator for m in members])
    assert d.net.minibatch.twice_differentiable is r1 and d.net.minibatch.T is None
    x = torch.randn(3, 96, 1)
    logits = d(x, batch=32)
    (logits ** 2).sum().backward()
    with torch.no_grad():
        d.flat -= 0.1 * d.flat.grad
    for k, m in enumerate(members):
        torch.testing.assert_close(logits[k], m.discriminator(x[k], batch=32))
        (m.discriminator(x[k], batch=32) ** 2).sum().backward()
        with torch.no_grad():
            for p in m.discriminator.parameters():
                p -= 0.1 * p.grad
        for (name, mine), theirs in zip(d.member(k).state_dict().items(), m.discriminator.state_dict().values(),
                                        strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("outputs", [1, 3])
def test_a_narrow_layer_matches_the_plain_product_through_two_derivatives(outputs):
    # NarrowProduct is baddbmm laid out for few outputs, with a hand-written backward that R1 differentiates
    # again: check its values and both derivatives against baddbmm's own (float64, tight)
    x, weight, bias = (torch.randn(3, 40, 5, dtype=torch.float64, requires_grad=True),
                       torch.randn(3, 5, outputs, dtype=torch.float64, requires_grad=True),
                       torch.randn(3, 1, outputs, dtype=torch.float64, requires_grad=True))
    torch.testing.assert_close(NarrowProduct.apply(x, weight, bias), torch.baddbmm(bias, x, weight))
    assert torch.autograd.gradcheck(NarrowProduct.apply, (x, weight, bias))
    assert torch.autograd.gradgradcheck(NarrowProduct.apply, (x, weight, bias))


def test_an_r1_penalty_through_a_narrow_layer_equals_the_plain_products():
    # R1 differentiates D's input gradient again: the gradient of the penalty for the weights must be
    # the one the plain product gives (the layer takes the narrow path for K > 1)
    layer = StackedLinear(6, 1)
    weight = torch.randn(4, 6, 1, requires_grad=True)
    bias = torch.randn(4, 1, 1, requires_grad=True)
    x = torch.randn(4, 32, 6, requires_grad=True)

    def penalty_gradient(forward):
        hidden = torch.sigmoid(x * 1.5)
        (grad_x,) = torch.autograd.grad(forward(hidden).sum(), [x], create_graph=True)
        return torch.autograd.grad(grad_x.pow(2).sum(), [weight])  # a bias does not move D's input gradient

    layer.lent = (weight, bias)
    narrow = penalty_gradient(layer)
    plain = penalty_gradient(lambda h: torch.baddbmm(bias, h, weight))
    for mine, theirs in zip(narrow, plain, strict=True):
        torch.testing.assert_close(mine, theirs)
