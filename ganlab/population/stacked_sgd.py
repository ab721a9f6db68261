"""SGD with momentum over one stacked parameter ``[K, P]``: one learning rate and momentum per member.

The same arithmetic as torch.optim.SGD without dampening, Nesterov or weight decay (a test checks it
against torch member by member): ``buf = momentum * buf + grad; w -= lr * buf``. torch starts the
buffer as a copy of the first gradient; starting it at zero gives that same first step exactly.
A step taken by some members only (``index``) reads and writes their rows alone, so members with
fewer D or G steps per iteration sit the extra steps out with their weights and buffers untouched.

One tensor expression over all members on every device: the update is two passes over memory (not
Adam's dozen, which is why ``StackedAdam`` has a per-member fused path on CPU), and reads nothing on
the host, so a CUDA graph can replay it.
"""

from __future__ import annotations

import torch

from ganlab.population.member_rows_optimizer import MemberRowsOptimizer


class StackedSGD(MemberRowsOptimizer):
    """A torch Optimizer whose rate and momentum are [K] tensors and whose one parameter is [K, P]."""

    def __init__(self, param: torch.Tensor, lr: torch.Tensor, momentum: torch.Tensor,
                 buffer: torch.Tensor | None = None) -> None:
        super().__init__(param)
        self.lr = lr.clone()  # the current rates; schedules rewrite them each iteration
        self.momentum = momentum
        self.buffer = torch.zeros_like(param) if buffer is None else buffer  # updated in place

    @torch.no_grad()
    def update(self, grad: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """:meth:`step` without torch.optim's per-call wrapper (the population loop calls it four times an
        iteration per cohort)."""
        if index is None:
            self.buffer.mul_(self.momentum.unsqueeze(1)).add_(grad)
            self.param.sub_(self.buffer * self.lr.unsqueeze(1))
            return
        buffer = self.buffer.index_select(0, index).mul_(self.momentum.index_select(0, index).unsqueeze(1)).add_(grad)
        param = self.param.index_select(0, index).sub_(buffer * self.lr.index_select(0, index).unsqueeze(1))
        self.buffer.index_copy_(0, index, buffer)
        self.param.index_copy_(0, index, param)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "momentum_buffer": self.buffer}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"].clone()
        self.buffer.copy_(state["momentum_buffer"])
