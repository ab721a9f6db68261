"""Adam over one stacked parameter ``[K, P]``: one learning rate, beta pair and step count per member.

torch.optim.Adam takes one learning rate per parameter group, and a population holds all of member
k's weights in row k of one tensor, so the per-member update is written out here (the same arithmetic
as torch.optim.Adam without weight decay or amsgrad; a test checks it against torch member by member).
A step taken by some members only (``index``) reads and writes their rows alone: the others'
parameters, moments and step counts stay exactly as they were, which is how members with fewer D or
G steps per iteration sit out the extra steps.

Two ways to the same update, chosen by device:

- CPU: one call of torch's fused Adam kernel (``torch._fused_adam_``, what ``torch.optim.Adam(fused=True)``
  runs) per member, on that member's rows. The update is memory-bound: the kernel reads and writes
  each element once, where the tensor expression below makes about a dozen passes. Measured on the
  2-core development machine, a D step for 8 members of the default recipe (33,153 weights each)
  took 0.23-0.37 ms against 2.0-2.7 ms.
- Other devices (CUDA): one tensor expression over all members, a few kernel launches whatever K is
  (K per-member launches would cost more than the arithmetic at K = 1,024), with no read of the
  rates on the host, so a CUDA graph can replay it.

Either way a member's update depends on its own rows alone (the expression uses element-wise
multiplies and adds, not ``lerp``, whose vectorised and scalar paths round differently): it is the
same bits whether 3 members step or 2, so one member stopping leaves the others exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ganlab.population.member_rows_optimizer import MemberRowsOptimizer


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


class StackedAdam(MemberRowsOptimizer):
    """A torch Optimizer (the standard interface, state_dict included) whose hyperparameters are [K]
    tensors and whose one parameter is [K, P]."""

    def __init__(self, param: torch.Tensor, lr: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor,
                 eps: float = 1e-8, state: AdamState | None = None, fused: bool | None = None) -> None:
        """``fused``: the per-member fused kernel (None: on CPU only; see the module's docstring)."""
        super().__init__(param)
        self.fused = param.device.type == "cpu" if fused is None else fused
        self.lr = lr.clone()  # the current rates; schedules rewrite them each iteration
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        state = state or AdamState.zeros(param)
        self.steps, self.exp_avg, self.exp_avg_sq = state.steps, state.exp_avg, state.exp_avg_sq  # updated in place

    @torch.no_grad()
    def update(self, grad: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """:meth:`step` without torch.optim's wrapper around it (profiler records and hook checks, about
        60 us a call here, which the population loop pays four times an iteration per cohort)."""
        if self.fused:
            self._fused_rows(grad, index)
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

    def _fused_rows(self, grad: torch.Tensor, index: torch.Tensor | None) -> None:
        """The CPU step: the fused kernel on each taking member's rows (it counts steps itself from the
        step tensor it is given, so the counts are raised first, as torch.optim.Adam does)."""
        members = range(self.param.shape[0]) if index is None else index.tolist()
        if index is None:
            self.steps.add_(1.0)
        else:
            self.steps.index_add_(0, index, torch.ones(len(members), dtype=self.steps.dtype))
        lrs, beta1, beta2 = self.lr.tolist(), self.beta1.tolist(), self.beta2.tolist()
        for row, k in enumerate(members):
            torch._fused_adam_([self.param[k]], [grad[row]], [self.exp_avg[k]], [self.exp_avg_sq[k]], [],
                               [self.steps[k]], lr=lrs[k], beta1=beta1[k], beta2=beta2[k], weight_decay=0.0,
                               eps=self.eps, amsgrad=False, maximize=False)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"].clone()
        for mine, saved in ((self.steps, state["steps"]), (self.exp_avg, state["exp_avg"]),
                            (self.exp_avg_sq, state["exp_avg_sq"])):
            mine.copy_(saved)
