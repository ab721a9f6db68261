"""StackedAdam against torch.optim.Adam, member by member, and steps some members sit out."""

import pytest
import torch

from ganlab.population.stacked_adam import StackedAdam
from ganlab.training.optimizers import SCHEDULES

K = 3
LRS, BETA1, BETA2 = [1e-3, 3e-2, 2e-4], [0.5, 0.9, 0.0], [0.999, 0.99, 0.9]
SHAPES = [(4, 5), (5,)]  # a weight and a bias, laid end to end in each member's row


def _grad(step: int) -> torch.Tensor:
    return torch.randn(K, 25, generator=torch.Generator().manual_seed(step))


def _split(row: torch.Tensor) -> list[torch.Tensor]:
    weight, bias = row.split([20, 5])
    return [weight.view(4, 5), bias]


def step_side_by_side(stacked_optimizer, torch_optimizers, singles, steps: int = 20) -> None:
    """The same gradients to the stacked optimizer and to member k's own torch optimizer over its own
    tensors ``singles[k]``; then each member's row must equal its torch twin."""
    stacked = stacked_optimizer.param
    for step in range(steps):
        grad = _grad(step)
        stacked.grad = grad.clone()
        stacked_optimizer.step()
        for k in range(K):
            for p, g in zip(singles[k], _split(grad[k]), strict=True):
                p.grad = g.clone()
            torch_optimizers[k].step()
    for k in range(K):
        for mine, single in zip(_split(stacked[k]), singles[k], strict=True):
            torch.testing.assert_close(mine, single.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-per-member", "one-expression"])
def test_each_member_follows_torch_adam_with_its_own_rate_and_betas(fused):
    start = torch.randn(K, 25)
    stacked = start.clone()
    adam = StackedAdam(stacked, torch.tensor(LRS), torch.tensor(BETA1), torch.tensor(BETA2), fused=fused)
    singles = [[t.clone().requires_grad_(True) for t in _split(start[k])] for k in range(K)]
    torch_adams = [torch.optim.Adam(singles[k], lr=LRS[k], betas=(BETA1[k], BETA2[k])) for k in range(K)]
    step_side_by_side(adam, torch_adams, singles)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-per-member", "one-expression"])
def test_a_step_for_some_members_leaves_the_others_weights_moments_and_step_count(fused):
    start = torch.randn(K, 25)
    adam, twin = (StackedAdam(start.clone(), torch.tensor(LRS), torch.tensor(BETA1), torch.tensor(BETA2),
                              fused=fused) for _ in range(2))
    for opt in (adam, twin):
        opt.param.grad = torch.ones(K, 25)
        opt.step()
    param = adam.param
    before = (param[1].clone(), adam.exp_avg[1].clone(), adam.exp_avg_sq[1].clone(), adam.steps[1].item())
    adam.step(grad=torch.full((2, 25), 5.0), index=torch.tensor([0, 2]))
    twin.param.grad = torch.full((K, 25), 5.0)
    twin.step()  # every member steps
    after = (param[1], adam.exp_avg[1], adam.exp_avg_sq[1], adam.steps[1].item())
    for b, a in zip(before[:3], after[:3], strict=True):
        assert torch.equal(b, a)
    assert before[3] == after[3] == 1.0
    assert adam.steps.tolist() == [2.0, 1.0, 2.0]
    for k in (0, 2):  # the members that stepped stepped as they do when every member steps
        torch.testing.assert_close(param[k], twin.param[k], rtol=0, atol=1e-7)
        torch.testing.assert_close(adam.exp_avg_sq[k], twin.exp_avg_sq[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["none", "cosine", "linear", "exponential"])
def test_each_schedules_closed_form_matches_torchs_scheduler(name):
    total, frac = 50, 0.05
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    scheduler = SCHEDULES[name].make and SCHEDULES[name].make(opt, total, frac)
    for t in range(total + 3):
        assert opt.param_groups[0]["lr"] / 2.0 == pytest.approx(SCHEDULES[name].factor(t, total, frac), rel=1e-6)
        opt.step()
        if scheduler is not None and t < total:
            scheduler.step()
    factors = SCHEDULES[name].factor(10, total, torch.tensor([0.01, 0.5]))  # one final fraction per member
    assert factors.shape == (2,)
