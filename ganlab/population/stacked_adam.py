"""Adam over stacked parameters ``[K, ...]``: one learning rate, beta pair and step count per member.

torch.optim.Adam takes one learning rate per parameter group, and a population holds each weight of
all K members in one tensor, so the per-member update is written out here (the same arithmetic as
torch.optim.Adam without weight decay or amsgrad; a test checks it against torch member by member).
``mask`` skips members: their parameters, moments and step counts stay exactly as they were, which
is how members with fewer D or G steps per iteration sit out the extra steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AdamState:
    """Adam's per-member state: step counts [K] (float64) and both moments of every stacked parameter.
    A population owns these tensors (they are restacked and checkpointed with the weights) and lends
    them to the optimizer, which updates them in place."""

    steps: torch.Tensor
    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]

    @staticmethod
    def zeros(params: list[torch.Tensor]) -> AdamState:
        return AdamState(torch.zeros(params[0].shape[0], dtype=torch.float64, device=params[0].device),
                         [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params])


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[K] -> [K, 1, ..., 1], broadcastable against a stacked tensor ``like``."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


class StackedAdam(torch.optim.Optimizer):
    """A torch Optimizer (so Lightning can hold and checkpoint it) whose hyperparameters are [K] tensors."""

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor,
                 eps: float = 1e-8, state: AdamState | None = None) -> None:
        params = list(params)
        super().__init__(params, {})
        self.params = params
        self.members = params[0].shape[0]
        self.lr = lr.clone()  # the current rates; schedules rewrite them each iteration
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        state = state or AdamState.zeros(params)
        self.steps, self.exp_avg, self.exp_avg_sq = state.steps, state.exp_avg, state.exp_avg_sq  # updated in place

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, closure=None, mask: torch.Tensor | None = None) -> None:
        """One Adam step for the members where ``mask`` is True (all when None)."""
        steps = self.steps + (1.0 if mask is None else mask.to(self.steps.dtype))
        # the bias corrections in float64, as torch computes them from a Python step count
        correction1 = (1.0 - self.beta1.double() ** steps).to(self.lr.dtype)
        correction2 = (1.0 - self.beta2.double() ** steps).to(self.lr.dtype)
        per_member = {"step": self.lr / correction1, "inv_root2": correction2.rsqrt(),
                      "b1c": 1.0 - self.beta1, "b2": self.beta2, "b2c": 1.0 - self.beta2}
        shaped: dict[int, dict[str, torch.Tensor]] = {}
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            c = shaped.setdefault(p.dim(), {key: _per_member(value, p) for key, value in per_member.items()})
            g = p.grad
            if mask is None:  # in place: ~6 kernels per tensor
                m.lerp_(g, c["b1c"])  # b1 * m + (1 - b1) * g
                v.mul_(c["b2"]).add_(g.square().mul_(c["b2c"]))
                p.sub_(m.div(v.sqrt().mul_(c["inv_root2"]).add_(self.eps)).mul_(c["step"]))
                continue
            keep = _per_member(mask, p)
            new_m = torch.lerp(m, g, c["b1c"])
            new_v = v * c["b2"] + g.square() * c["b2c"]
            update = new_m / (new_v.sqrt() * c["inv_root2"] + self.eps) * c["step"]
            m.copy_(torch.where(keep, new_m, m))
            v.copy_(torch.where(keep, new_v, v))
            p.sub_(torch.where(keep, update, torch.zeros_like(update)))
        self.steps.copy_(steps)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"].clone()
        self.steps.copy_(state["steps"])
        for mine, saved in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"], strict=True):
            mine.copy_(saved)
