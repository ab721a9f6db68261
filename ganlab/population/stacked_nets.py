"""K copies of one network as one module whose weights are stacked ``[K, ...]``.

The copies are ganlab's own modules (``ganlab.nets``), built once per member; :func:`stack_members`
returns a copy of member 0's module tree in which every ``nn.Linear`` becomes a :class:`StackedLinear`
(one ``torch.baddbmm`` for all K members), every buffer holds the K members' values (a Fourier lift's
projection then multiplies batch-wise), and the D input transform runs on the K members' samples at
once. Activations are element-wise and shared. So the networks are defined once, in ``ganlab.nets``,
and a layer's K small matrix products become one batched product: no per-member Python, no vmap
dispatch (which cost ~3 ms a call here, more than the arithmetic).

Inputs and outputs are ``[K, n, features]``.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.preprocess import Preprocess


class StackedLinear(nn.Module):
    """K Linear layers: x [K, n, in] -> [K, n, out] with one batched matrix product."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach().t() for layer in layers]).contiguous())
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]).unsqueeze(1))
        self.index: torch.Tensor | None = None  # set by StackedNets.only(): compute for these members alone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias.index_select(0, self.index), x, self.weight.index_select(0, self.index))

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[k].t().detach().clone(), "bias": self.bias[k, 0].detach().clone()}


class MemberwisePreprocess(nn.Module):
    """A D input transform on [K, n, dim]: members' samples laid end to end, so each group of
    ``batch_size`` samples stays inside one member (n is a multiple of it), then split back."""

    def __init__(self, preprocess: Preprocess) -> None:
        super().__init__()
        self.inner = preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[0]
        return self.inner(x.flatten(0, 1)).unflatten(0, (k, -1))


def _stack_into(stacked: nn.Module, copies: list[nn.Module]) -> None:
    """Replace, in ``stacked`` (a copy of copies[0]), each Linear and buffer by its K-member form."""
    for name, child in list(stacked.named_children()):
        members = [getattr(c, name) for c in copies]
        if isinstance(child, nn.Linear):
            setattr(stacked, name, StackedLinear(members))
        elif isinstance(child, Preprocess):
            if any(True for _ in child.parameters()):
                raise ConfigError(f"{type(child).__name__} has weights: not supported by population training")
            setattr(stacked, name, MemberwisePreprocess(child))
        else:
            _stack_into(child, members)
    for name, _ in list(stacked.named_buffers(recurse=False)):
        stacked.register_buffer(name, torch.stack([getattr(c, name) for c in copies]))
    own = [n for n, _ in stacked.named_parameters(recurse=False)]
    if own:
        raise ConfigError(f"{type(stacked).__name__} holds weights other than Linear layers ({', '.join(own)}): "
                          "not supported by population training")


class StackedNets(nn.Module):
    """The stacked module plus what turns member k back into a plain module."""

    def __init__(self, copies: list[nn.Module]) -> None:
        super().__init__()
        self.net = copy.deepcopy(copies[0])
        _stack_into(self.net, copies)
        self._template = [copy.deepcopy(copies[0])]  # a list: not a submodule, not trained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @contextlib.contextmanager
    def only(self, index: torch.Tensor):
        """Within the block the module is the members ``index`` alone: inputs and outputs are
        [len(index), n, features], and gradients reach those members' slices of the stacked weights
        (a D step that only some members take costs only theirs)."""
        swapped = []
        for module in self.net.modules():
            if isinstance(module, StackedLinear):
                module.index = index
            for name, buffer in list(module.named_buffers(recurse=False)):
                swapped.append((module, name, buffer))
                setattr(module, name, buffer.index_select(0, index))
        try:
            yield self
        finally:
            for module in self.net.modules():
                if isinstance(module, StackedLinear):
                    module.index = None
            for module, name, buffer in swapped:
                setattr(module, name, buffer)

    def member(self, k: int) -> nn.Module:
        """Member k as a plain module (for saving, sampling or a standalone comparison)."""
        module = copy.deepcopy(self._template[0]).to(next(self.net.parameters()).device)
        state = {}
        for name, sub in self.net.named_modules():
            prefix = f"{name}." if name else ""
            if isinstance(sub, StackedLinear):
                state.update({prefix + key: value for key, value in sub.member_state(k).items()})
            for buffer_name, buffer in sub.named_buffers(recurse=False):
                state[prefix + buffer_name] = buffer[k].clone()  # D input transforms hold no buffers
        module.load_state_dict(state)
        return module
