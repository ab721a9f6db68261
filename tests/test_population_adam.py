"""StackedAdam against torch.optim.Adam, member by member, and its mask."""

import pytest
import torch

from ganlab.population.stacked_adam import StackedAdam
from ganlab.training.optimizers import SCHEDULES

K = 3
LRS, BETA1, BETA2 = [1e-3, 3e-2, 2e-4], [0.5, 0.9, 0.0], [0.999, 0.99, 0.9]


def _grads(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return [torch.randn(K, 4, 5, generator=gen), torch.randn(K, 1, 5, generator=gen)]


def test_each_member_follows_torch_adam_with_its_own_rate_and_betas():
    start = [torch.randn(K, 4, 5), torch.randn(K, 1, 5)]
    stacked = [p.clone() for p in start]
    adam = StackedAdam(stacked, torch.tensor(LRS), torch.tensor(BETA1), torch.tensor(BETA2))
    singles = [[p[k].clone().requires_grad_(True) for p in start] for k in range(K)]
    torch_adams = [torch.optim.Adam(singles[k], lr=LRS[k], betas=(BETA1[k], BETA2[k])) for k in range(K)]
    for step in range(20):
        grads = _grads(step)
        for p, g in zip(stacked, grads, strict=True):
            p.grad = g.clone()
        adam.step()
        for k in range(K):
            for p, g in zip(singles[k], grads, strict=True):
                p.grad = g[k].clone()
            torch_adams[k].step()
    for k in range(K):
        for p, single in zip(stacked, singles[k], strict=True):
            torch.testing.assert_close(p[k], single.detach(), rtol=1e-5, atol=1e-6)


def test_a_masked_member_keeps_its_weights_moments_and_step_count():
    params = [torch.randn(K, 4, 5)]
    adam = StackedAdam(params, torch.tensor(LRS), torch.tensor(BETA1), torch.tensor(BETA2))
    params[0].grad = torch.ones(K, 4, 5)
    adam.step()
    before = (params[0][1].clone(), adam.exp_avg[0][1].clone(), adam.exp_avg_sq[0][1].clone(), adam.steps[1].item())
    params[0].grad = torch.full((K, 4, 5), 5.0)
    adam.step(mask=torch.tensor([True, False, True]))
    after = (params[0][1], adam.exp_avg[0][1], adam.exp_avg_sq[0][1], adam.steps[1].item())
    for b, a in zip(before[:3], after[:3], strict=True):
        assert torch.equal(b, a)
    assert before[3] == after[3] == 1.0
    assert adam.steps.tolist() == [2.0, 1.0, 2.0]


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
