"""Adam over one stacked parameter ``[K, P]``: one learning rate, beta pair and step count per member.

torch.optim.Adam takes one learning rate per parameter group, and a population holds all of member
k's weights in row k of one tensor, so the per-member update is written out here (the same arithmetic
as torch.optim.Adam without weight decay or amsgrad; a test checks it against torch member by member).
A step taken by some members only (``index``) reads and writes their rows alone: the others'
parameters, moments and step counts stay exactly as they were, which is how members with fewer D or
G steps per iteration sit out the extra steps. The arithmetic is element-wise multiplies and adds
(not ``lerp``, whose vectorised and scalar paths round differently): a member's update is then the
same bits whether 3 members step or 2, so one member stopping leaves the others exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AdamState:
    """Adam's per-member state: step counts [K] (float64) and both moments [K, P]. A population owns
    these tensors (they are restacked and checkpointed with the weights) and lends them to the
    optimizer, which updates them in place."""

    steps: torch.Tensor
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor

    @staticmethod
    def zeros(param: torch.Tensor) -> AdamState:
        return AdamState(torch.zeros(param.shape[0], dtype=torch.float64, device=param.device),
                         torch.zeros_like(param), torch.zeros_like(param))


class StackedAdam(torch.optim.Optimizer):
    """A torch Optimizer (the standard interface, state_dict included) whose hyperparameters are [K]
    tensors and whose one parameter is [K, P]."""

    def __init__(self, param: torch.Tensor, lr: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor,
                 eps: float = 1e-8, state: AdamState | None = None) -> None:
        super().__init__([param], {})
        self.param = param
        self.lr = lr.clone()  # the current rates; schedules rewrite them each iteration
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        state = state or AdamState.zeros(param)
        self.steps, self.exp_avg, self.exp_avg_sq = state.steps, state.exp_avg, state.exp_avg_sq  # updated in place

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.param.grad = None

    @torch.no_grad()
    def step(self, closure=None, grad: torch.Tensor | None = None, index: torch.Tensor | None = None) -> None:
        """One Adam step. ``grad`` defaults to the parameter's ``.grad``; with ``index`` it is the
        gradient of those members' rows alone ([len(index), P]) and only they step."""
        grad = self.param.grad if grad is None else grad
        if grad is None:
            return
        pick = (lambda t: t) if index is None else (lambda t: t.index_select(0, index))
        steps = pick(self.steps) + 1.0
        beta1, beta2 = pick(self.beta1), pick(self.beta2)
        # the bias corrections in float64, as torch computes them from a Python step count
        correction1 = (1.0 - beta1.double() ** steps).to(grad.dtype)
        correction2 = (1.0 - beta2.double() ** steps).to(grad.dtype)
        step_size = (pick(self.lr) / correction1).unsqueeze(1)
        inv_root2 = correction2.rsqrt().unsqueeze(1)
        # with no index, pick() is the tensors themselves and these updates are in place
        m = pick(self.exp_avg).mul_(beta1.unsqueeze(1)).add_(grad * (1.0 - beta1).unsqueeze(1))
        v = pick(self.exp_avg_sq).mul_(beta2.unsqueeze(1)).add_(grad.square().mul_((1.0 - beta2).unsqueeze(1)))
        p = pick(self.param).sub_(m.div(v.sqrt().mul_(inv_root2).add_(self.eps)).mul_(step_size))
        if index is None:
            self.steps.copy_(steps)
            return
        self.exp_avg.index_copy_(0, index, m)
        self.exp_avg_sq.index_copy_(0, index, v)
        self.param.index_copy_(0, index, p)
        self.steps.index_copy_(0, index, steps)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"].clone()
        for mine, saved in ((self.steps, state["steps"]), (self.exp_avg, state["exp_avg"]),
                            (self.exp_avg_sq, state["exp_avg_sq"])):
            mine.copy_(saved)
