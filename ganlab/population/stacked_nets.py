"""K copies of one network as one module whose weights are one flat ``[K, P]`` parameter.

The copies are ganlab's own modules (``ganlab.nets``), built once per member; :class:`StackedNets`
keeps a copy of member 0's module tree in which every ``nn.Linear`` becomes a :class:`StackedLinear`
(one ``torch.baddbmm`` for all K members), every buffer holds the K members' values (a Fourier lift's
projection then multiplies batch-wise), and the D input transform runs on the K members' samples at
once. Activations are element-wise and shared. So the networks are defined once, in ``ganlab.nets``,
and a layer's K small matrix products become one batched product: no per-member Python, no vmap
dispatch (which cost ~3 ms a call here, more than the arithmetic).

Row k of ``flat`` is member k's every weight and bias, end to end; the layers read views of it. One
tensor per network is what makes the optimizer, the EMA and restacking a few operations instead of a
few per weight tensor (Adam over six tensors with masks was a third of a CPU step), and a step that
only some members take works on their rows alone (:meth:`StackedNets.only`).

A ``Tanh`` between two Linear layers runs as a sigmoid: tanh(a) = 2 sigmoid(2a) - 1, and the factor
2 and the shift -1 are folded into the two layers' weights (the first's weights and bias doubled; the
second's weights doubled and its bias less the sum of its weights' rows), so the activations get one
sigmoid and no extra element-wise pass. The fold costs a few operations on the weights, which are small;
on the development machine's CPU torch's tanh costs 3.4-5 ns an element and its sigmoid about 1, and
tanh was a fifth of the default recipe's population step. ``flat`` holds the members' own weights: the
fold is applied to what the layers are lent, in the forward pass (the gradient flows through it).

A module with weights of its own (the minibatch layer's ``T``) that declares ``takes_member_weights``
gets them as rows of ``flat`` too, lent as ``[K, *shape]`` for each forward pass; its forward must treat
the leading K as the members. Any other module with weights is a clear error.

Inputs and outputs are ``[K, n, features]``.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ganlab.errors import ConfigError
from ganlab.preprocess import Preprocess

# A layer with at most this many outputs (G's last layer: one per data dimension; D's: one logit)
# computes its K products as :class:`NarrowProduct`, with the samples, not the few outputs, as the
# matrices' long side: torch's CPU batched product is slow for narrow outputs (K = 2 members at batch
# 2,048, 64 -> 1 after a sigmoid: 352 us forward and 830 us with its backward, against 188 and 622;
# one thread, 2026-12-07, docs/population_speed.md). With one member the plain form is as fast or
# faster, so K = 1 keeps it; on a GPU, where it is unmeasured, so does every K.
NARROW_OUTPUT = 8


class StackedLinear(nn.Module):
    """K Linear layers: x [K, n, in] -> [K, n, out] with one batched matrix product. The weights are
    views of the owning :class:`StackedNets`' rows, lent for one forward call."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.feeds_tanh = False  # a folded tanh follows: the layer's output is doubled
        self.after_tanh = False  # a folded tanh precedes: the input is sigmoid(2a), not tanh(a)
        self.lent: tuple[torch.Tensor, torch.Tensor] | None = None  # (weight [K, in, out], bias [K, 1, out])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.lent
        if self.out_features <= NARROW_OUTPUT and x.shape[0] > 1 and x.device.type == "cpu":
            return NarrowProduct.apply(x, weight, bias)
        return torch.baddbmm(bias, x, weight)


class NarrowProduct(torch.autograd.Function):
    """``baddbmm(bias, x, weight)`` for a layer with few outputs, with the products laid out so that the
    samples are the long side (see ``NARROW_OUTPUT``): forward out^T = W^T x^T; backward the input's
    gradient as a broadcast product (one output) or a plain product, contiguous as the activation
    before it expects (the transposed product's own backward gave a strided gradient, and the sigmoid
    backward over it took 1.4x as long as over a contiguous one). Its backward is made of
    differentiable operations, so R1's double backward goes through it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.transpose(1, 2), weight.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * weight.transpose(1, 2) if weight.shape[2] == 1 else torch.bmm(grad, weight.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            grad_weight = torch.bmm(grad.transpose(1, 2), x).transpose(1, 2)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=1, keepdim=True)
        return grad_x, grad_weight, grad_bias


class MemberwisePreprocess(nn.Module):
    """A D input transform on [K, n, dim]: members' samples laid end to end, so each group of
    ``batch_size`` samples stays inside one member (n is a multiple of it), then split back."""

    def __init__(self, preprocess: Preprocess) -> None:
        super().__init__()
        self.inner = preprocess

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[0]
        return self.inner(x.flatten(0, 1)).unflatten(0, (k, -1))


def _fold_tanhs(seq: nn.Module) -> tuple[set[str], set[str]]:
    """In a Sequential, replace each Tanh between two Linear layers by a Sigmoid; return the names of
    the Linear layers before and after one (see the module's docstring)."""
    before: set[str] = set()
    after: set[str] = set()
    if not isinstance(seq, nn.Sequential):
        return before, after
    names = [name for name, _ in seq.named_children()]
    for prev, name, nxt in zip(names, names[1:], names[2:], strict=False):  # consecutive triples
        if isinstance(seq.get_submodule(name), nn.Tanh) and all(
                isinstance(seq.get_submodule(n), nn.Linear) for n in (prev, nxt)):
            setattr(seq, name, nn.Sigmoid())
            before.add(prev)
            after.add(nxt)
    return before, after


def _stack_into(stacked: nn.Module, copies: list[nn.Module], prefix: str,
                layers: list[tuple[str, StackedLinear]], columns: list[torch.Tensor],
                lent: list[tuple[str, nn.Module, str, torch.Size]], lent_columns: list[torch.Tensor]) -> None:
    """Replace, in ``stacked`` (a copy of copies[0]), each Linear by a StackedLinear (its K members'
    weights and biases appended to ``columns``), each buffer by its K-member stack, and each weight of a
    module that takes its members' weights itself (``takes_member_weights``) by a slot lent [K, *shape]
    in the forward pass (appended to ``lent`` and ``lent_columns``)."""
    feeds_tanh, after_tanh = _fold_tanhs(stacked)
    for name, child in list(stacked.named_children()):
        members = [getattr(c, name) for c in copies]
        if isinstance(child, nn.Linear):
            layer = StackedLinear(child.in_features, child.out_features)
            layer.feeds_tanh, layer.after_tanh = name in feeds_tanh, name in after_tanh
            setattr(stacked, name, layer)
            layers.append((prefix + name, layer))
            columns.append(torch.stack([m.weight.detach().t().reshape(-1) for m in members]))
            columns.append(torch.stack([m.bias.detach() for m in members]))
        elif isinstance(child, Preprocess):
            if any(True for _ in child.parameters()):
                raise ConfigError(f"{type(child).__name__} has weights: not supported by population training")
            setattr(stacked, name, MemberwisePreprocess(child))
        else:
            _stack_into(child, members, f"{prefix}{name}.", layers, columns, lent, lent_columns)
    for name, _ in list(stacked.named_buffers(recurse=False)):
        stacked.register_buffer(name, torch.stack([getattr(c, name) for c in copies]))
    own = [(n, p.shape) for n, p in stacked.named_parameters(recurse=False)]
    if own and not getattr(type(stacked), "takes_member_weights", False):
        raise ConfigError(f"{type(stacked).__name__} holds weights other than Linear layers "
                          f"({', '.join(n for n, _ in own)}): not supported by population training")
    for name, shape in own:
        lent.append((prefix + name, stacked, name, shape))
        lent_columns.append(torch.stack([getattr(c, name).detach().reshape(-1) for c in copies]))
        del stacked._parameters[name]
        setattr(stacked, name, None)  # a plain attribute now: the members' [K, *shape] view, in forward


class StackedNets(nn.Module):
    """The stacked module, its flat weights, and what turns member k back into a plain module."""

    def __init__(self, copies: list[nn.Module]) -> None:
        super().__init__()
        self.net = copy.deepcopy(copies[0])
        layers: list[tuple[str, StackedLinear]] = []
        columns: list[torch.Tensor] = []
        lent: list[tuple[str, nn.Module, str, torch.Size]] = []
        lent_columns: list[torch.Tensor] = []
        _stack_into(self.net, copies, "", layers, columns, lent, lent_columns)
        self.flat = nn.Parameter(torch.cat(columns + lent_columns, dim=1).contiguous())
        self._layers = layers  # a list: the layers are registered once, inside self.net
        self._lent = lent  # other modules' own weights, after the layers' in each row
        self._sizes = [c.shape[1] for c in columns + lent_columns]
        self._fold = self._fold_factors()
        self.rows: torch.Tensor | None = None  # inside only(): the taking members' weights, a leaf of its own
        self._template = [copy.deepcopy(copies[0])]  # a list: not a submodule, not trained

    @property
    def widest_layer(self) -> int:
        """The most features any layer takes or gives, per sample (what sizes its activations)."""
        return max(max(layer.in_features, layer.out_features) for _, layer in self._layers)

    def weights(self) -> torch.Tensor:
        """What the forward pass reads and what a gradient is taken with respect to: ``flat``, or inside
        :meth:`only` the rows of the members it names."""
        return self.flat if self.rows is None else self.rows

    def _fold_factors(self) -> torch.Tensor | None:
        """Per weight: the factor the tanh folds scale it by (None when there is no fold)."""
        factors = []
        sizes = self._sizes[:2 * len(self._layers)]
        for (_, layer), weights, biases in zip(self._layers, sizes[::2], sizes[1::2], strict=True):
            out = 2.0 if layer.feeds_tanh else 1.0
            factors += [torch.full((weights,), out * (2.0 if layer.after_tanh else 1.0)), torch.full((biases,), out)]
        factors += [torch.ones(size) for size in self._sizes[len(sizes):]]
        folded = torch.cat(factors)
        return None if bool((folded == 1.0).all()) else folded

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)
        if self._fold is not None:
            self._fold = fn(self._fold)  # not a buffer: it is not per member, and not part of the state
        return out

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """``kwargs`` go to the stacked module (a minibatch D's ``batch``)."""
        weights = self.weights() if self._fold is None else self.weights() * self._fold
        parts = weights.split(self._sizes, dim=1)
        try:
            for i, (_, layer) in enumerate(self._layers):
                weight = parts[2 * i].unflatten(1, (layer.in_features, layer.out_features)).contiguous()
                bias = parts[2 * i + 1].unsqueeze(1)
                if layer.after_tanh:  # the input is s = (h + 1) / 2 and the weight doubled: take back sum(W)
                    bias = torch.add(bias, weight.sum(dim=1, keepdim=True), alpha=-0.5)
                layer.lent = (weight, bias)
            for (_, module, name, shape), part in zip(self._lent, parts[2 * len(self._layers):], strict=True):
                setattr(module, name, part.unflatten(1, shape).contiguous())
            return self.net(x, **kwargs)
        finally:
            for _, layer in self._layers:
                layer.lent = None
            for _, module, name, _ in self._lent:
                setattr(module, name, None)

    @contextlib.contextmanager
    def only(self, index: torch.Tensor):
        """Within the block the module is the members ``index`` alone: inputs and outputs are
        [len(index), n, features], and :meth:`weights` is a copy of their rows whose gradient is theirs
        alone (a D step that only some members take costs only theirs). Changes to those rows must be
        written back to ``flat`` (the optimizer does)."""
        self.rows = self.flat.detach().index_select(0, index).requires_grad_(self.flat.requires_grad)
        swapped = []
        for module in self.net.modules():
            for name, buffer in list(module.named_buffers(recurse=False)):
                swapped.append((module, name, buffer))
                setattr(module, name, buffer.index_select(0, index))
        try:
            yield self
        finally:
            self.rows = None
            for module, name, buffer in swapped:
                setattr(module, name, buffer)

    def member(self, k: int) -> nn.Module:
        """Member k as a plain module (for saving, sampling or a standalone comparison)."""
        module = copy.deepcopy(self._template[0]).to(self.flat.device)
        row = self.flat[k].detach().split(self._sizes)
        state = {}
        for i, (name, layer) in enumerate(self._layers):
            state[f"{name}.weight"] = row[2 * i].view(layer.in_features, layer.out_features).t().clone()
            state[f"{name}.bias"] = row[2 * i + 1].clone()
        for (name, _, _, shape), part in zip(self._lent, row[2 * len(self._layers):], strict=True):
            state[name] = part.view(shape).clone()
        for name, buffer in self.net.named_buffers():
            state[name] = buffer[k].clone()  # D input transforms hold no buffers
        module.load_state_dict(state)
        return module
