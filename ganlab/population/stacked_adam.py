"""Adam over stacked parameters ``[K, ...]``: one learning rate, beta pair and step count per member.

torch.optim.Adam takes one learning rate per parameter group, and a population holds each weight of
all K members in one tensor, so the per-member update is written out here (the same arithmetic as
torch.optim.Adam without weight decay or amsgrad; a test checks it against torch member by member).
``mask`` skips members: their parameters, moments and step counts stay exactly as they were, which
is how members with fewer D or G steps per iteration sit out the extra steps.
"""

from __future__ import annotations

import torch


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[K] -> [K, 1, ..., 1], broadcastable against a stacked tensor ``like``."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


class StackedAdam:
    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor,
                 eps: float = 1e-8) -> None:
        self.params = params
        self.members = params[0].shape[0]
        self.lr = lr.clone()  # the current rates; schedules rewrite them each iteration
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.steps = torch.zeros(self.members, dtype=torch.float64, device=lr.device)
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, mask: torch.Tensor | None = None) -> None:
        """One Adam step for the members where ``mask`` is True (all when None)."""
        steps = self.steps + (1.0 if mask is None else mask.to(self.steps.dtype))
        # the bias corrections in float64, as torch computes them from a Python step count
        correction1 = (1.0 - self.beta1.double() ** steps).to(self.lr.dtype)
        correction2 = (1.0 - self.beta2.double() ** steps).to(self.lr.dtype)
        step_size = self.lr / correction1
        root2 = correction2.sqrt()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            g = p.grad
            b1, b2 = _per_member(self.beta1, p), _per_member(self.beta2, p)
            new_m = torch.lerp(g, m, b1)  # b1 * m + (1 - b1) * g
            new_v = b2 * v + (1.0 - b2) * g * g
            update = _per_member(step_size, p) * new_m / (new_v.sqrt() / _per_member(root2, p) + self.eps)
            if mask is None:
                m.copy_(new_m)
                v.copy_(new_v)
                p.sub_(update)
            else:
                keep = _per_member(mask, p)
                m.copy_(torch.where(keep, new_m, m))
                v.copy_(torch.where(keep, new_v, v))
                p.sub_(torch.where(keep, update, torch.zeros_like(update)))
        self.steps = steps

    def state_dict(self) -> dict:
        return {"lr": self.lr, "steps": self.steps, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.lr, self.steps = state["lr"].clone(), state["steps"].clone()
        for mine, saved in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"], strict=True):
            mine.copy_(saved)
