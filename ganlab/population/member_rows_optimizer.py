"""The torch Optimizer interface shared by the population's optimizers (``stacked_adam``,
``stacked_sgd``): one ``[K, P]`` parameter whose row k is member k's weights, and a step that may be
taken by some members only. Subclasses write :meth:`update`, the arithmetic."""

from __future__ import annotations

import torch


class MemberRowsOptimizer(torch.optim.Optimizer):
    """``step`` / ``zero_grad`` over one stacked parameter; ``update(grad, index)`` does the work.
    ``lr`` holds each member's current rate ([K]), rewritten in place by the cohort's schedule."""

    lr: torch.Tensor

    def __init__(self, param: torch.Tensor) -> None:
        super().__init__([param], {})
        self.param = param

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.param.grad = None

    def step(self, closure=None, grad: torch.Tensor | None = None, index: torch.Tensor | None = None) -> None:
        """One step. ``grad`` defaults to the parameter's ``.grad``; with ``index`` it is the gradient
        of those members' rows alone ([len(index), P]) and only they step."""
        grad = self.param.grad if grad is None else grad
        if grad is not None:
            self.update(grad, index)

    def update(self, grad: torch.Tensor, index: torch.Tensor | None = None) -> None:
        """:meth:`step` without torch.optim's per-call wrapper (profiler records and hook checks, about
        60 us a call, which the population loop pays four times an iteration per cohort)."""
        raise NotImplementedError
