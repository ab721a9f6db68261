"""StackedSGD against torch.optim.SGD, member by member, and steps some members sit out; an SGD
population trains each member to the target."""

import numpy as np
import pytest
import torch
from test_population_adam import K, _split, step_side_by_side

from ganlab.population.stacked_sgd import StackedSGD

LRS, MOMENTA = [1e-2, 3e-1, 2e-3], [0.5, 0.0, 0.9]  # momentum 0: torch keeps no buffer at all


@pytest.mark.parametrize("torch_kernel", ["foreach", "fused"])
def test_each_member_follows_torch_sgd_with_its_own_rate_and_momentum(torch_kernel):
    start = torch.randn(K, 25)
    stacked = start.clone()
    sgd = StackedSGD(stacked, torch.tensor(LRS), torch.tensor(MOMENTA))
    singles = [[t.clone().requires_grad_(True) for t in _split(start[k])] for k in range(K)]
    kernel = {"foreach": {"foreach": True}, "fused": {"fused": True}}[torch_kernel]  # the single run's is fused
    torch_sgds = [torch.optim.SGD(singles[k], lr=LRS[k], momentum=MOMENTA[k], **kernel) for k in range(K)]
    step_side_by_side(sgd, torch_sgds, singles)
    assert not torch.equal(stacked, start)


def test_a_step_for_some_members_leaves_the_others_weights_and_buffer():
    start = torch.randn(K, 25)
    sgd, twin = (StackedSGD(start.clone(), torch.tensor(LRS), torch.tensor(MOMENTA)) for _ in range(2))
    for opt in (sgd, twin):
        opt.param.grad = torch.ones(K, 25)
        opt.step()
    before = (sgd.param[1].clone(), sgd.buffer[1].clone())
    sgd.step(grad=torch.full((2, 25), 5.0), index=torch.tensor([0, 2]))
    twin.param.grad = torch.full((K, 25), 5.0)
    twin.step()  # every member steps
    assert torch.equal(before[0], sgd.param[1]) and torch.equal(before[1], sgd.buffer[1])
    for k in (0, 2):  # those that stepped did what an all-member step does
        assert torch.equal(sgd.param[k], twin.param[k]) and torch.equal(sgd.buffer[k], twin.buffer[k])


@pytest.mark.slow
def test_sgd_members_with_their_own_rates_and_momenta_each_learn_the_target():
    from test_population_module import _configs, _fit, _ks

    from ganlab.population.cohort import Cohort

    # optim=sgd on the 1D recipe at 1,000 iterations (no short-run boost for SGD): measured, these
    # members reach KS 0.025, 0.022 and 0.068; the untrained generator is at 0.998
    members = [{"train.seed": 0},
               {"train.seed": 1, "optim.momentum": 0.0, "optim.d_lr": 2e-2, "optim.g_lr": 2e-2},
               {"train.seed": 2, "optim.momentum": 0.8, "optim.d_lr": 5e-3, "optim.g_lr": 5e-3}]
    cohort = Cohort(_configs(members, iterations=1000, extra=["optim=sgd"]))
    assert cohort.optimizers()[0].momentum.tolist() == pytest.approx([0.5, 0.0, 0.8])
    ks = _ks(_fit(cohort, 1000))
    assert np.all(ks < 0.15), ks


def test_an_sgd_cohort_restacks_and_reloads_with_its_momentum_buffers():
    """A sweep's members leave and join by restacking, and its checkpoint is the cohort's state_dict:
    both must carry each member's momentum buffer and momentum, or a resumed member would restart its
    velocity at zero."""
    from test_population_module import _configs

    from ganlab.population.cohort import Cohort

    configs = _configs([{"train.seed": 0}, {"train.seed": 1, "optim.momentum": 0.9}], iterations=20,
                       extra=["optim=sgd"])
    cohort = Cohort(configs)
    for _ in range(3):
        cohort.train_iteration()
    state = cohort.state_dict()
    assert state["sgd_d_momentum"].abs().sum() > 0 and state["member_momentum"].tolist() == pytest.approx([0.5, 0.9])
    reloaded = Cohort(configs)
    reloaded.load_state_dict(state)
    alone = Cohort.assemble([(cohort, [1])])
    torch.testing.assert_close(alone.sgd_g_momentum[0], cohort.sgd_g_momentum[1], rtol=0, atol=0)
    assert alone.optimizers()[0].momentum.tolist() == pytest.approx([0.9])
    reloaded.rng.set_state(cohort.rng.get_state())
    for c in (cohort, reloaded):
        c.train_iteration()
    assert torch.equal(cohort.generator.flat, reloaded.generator.flat)
    assert torch.equal(cohort.sgd_d_momentum, reloaded.sgd_d_momentum)
