"""A cohort: the members of a population that share every shape, the data and the batch size,
trained as one set of stacked tensors (one iteration of all of them at once).

Everything that belongs to a member is a tensor whose first dimension is the member: weights (G, D
and G's EMA copy), the optimizer's state (Adam's moments and step counts, SGD's momentum buffer), the
member's settings (rates, the optimizer's own such as betas, steps, label smoothing, EMA decay, R1
gamma, final lr fraction) and its iteration count. That makes the
operations a sweep needs generic: :meth:`Cohort.assemble` keeps some members of some cohorts and
stacks them into a new one (members retire and new trials join between iterations, each at its own
iteration count), moving to a device and checkpointing are ``nn.Module``'s own.

Each member is built exactly as its standalone run builds it (same seed, same initial weights). A
member whose loss turns NaN or infinite is noted on the device (no host synchronisation per
iteration) and stopped when :meth:`collect_failures` reads the note at the next evaluation. Every
tensor that outlives an iteration is updated in place, so an iteration can be captured as a CUDA
graph (``cuda_graphs.py``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from ganlab.nets.minibatch_discrimination import rows_judged_at_evaluation
from ganlab.population.member_rows_optimizer import MemberRowsOptimizer
from ganlab.population.member_settings import member_settings
from ganlab.population.stacked_nets import StackedNets
from ganlab.population.stacked_optimizers import STACKED_OPTIMIZERS
from ganlab.training.losses import LOSSES
from ganlab.training.optimizers import SCHEDULES
from ganlab.training.stabilizers import non_finite_reason, r1_penalty

SETTINGS = ("d_lr", "g_lr", "final_lr_fraction", "real_target", "ema_decay", "r1_gamma",
            "d_steps", "g_steps")
EVAL_CHUNK_BYTES = 256 * 2**20  # activations of one evaluation chunk on CPU (see forward_in_chunks)
GPU_CHUNK_SHARE = 8  # on CUDA a chunk may take this fraction of the free device memory, if more


def chunk_budget(device: torch.device, cpu_bytes: int) -> int:
    """Bytes one evaluation chunk may use: ``cpu_bytes`` on CPU; on a GPU, an eighth of its free memory
    when that is more (a GPU has plenty, and each chunk is another round of kernel launches)."""
    if device.type != "cuda":
        return cpu_bytes
    free, _ = torch.cuda.mem_get_info(device)
    return max(cpu_bytes, free // GPU_CHUNK_SHARE)
_DERIVED = ("_schedule", "_d_loss", "_g_loss", "_optimizers", "_d_masks", "_g_masks", "_joint_d")  # rebuilt by _derive


def build_member(cfg: DictConfig):
    """A member's networks, target and noise, built by the single-run builder with the member's seed.
    The random streams are left as they were: members joining a running population must not rewind
    the draws of the members already training. Seeded as ``seed_everything`` seeds the CPU streams the
    build draws from; its CUDA seeding formats the caller's stack each time (1.8 ms a member, deep in a
    sweep), and members are built on the CPU."""
    from ganlab.training.runner import build_module  # the one home of building a run

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed = int(cfg.train.seed)
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        module = build_module(cfg)
    random.setstate(py_state)
    np.random.set_state(np_state)
    return module


def _set_tensor(module: nn.Module, dotted: str, value: torch.Tensor) -> None:
    owner_name, _, leaf = dotted.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(value, requires_grad=owner._parameters[leaf].requires_grad)
    else:
        owner._buffers[leaf] = value


def train_cohorts(cohorts: list[Cohort], steps: int) -> None:
    """``steps`` iterations of each cohort, in turn (in the main process or in a cohort worker)."""
    for _ in range(steps):
        for cohort in cohorts:
            cohort.train_iteration()


class Cohort(nn.Module):
    """K members of one shape and batch size; ``keys`` name them (seeds, or sweep trial numbers)."""

    def __init__(self, configs: list[DictConfig], keys: list[Any] | None = None) -> None:
        super().__init__()
        self.configs = list(configs)
        self.keys = list(keys) if keys is not None else list(range(len(configs)))
        settings = member_settings(self.configs)
        members = [build_member(cfg) for cfg in self.configs]
        self.target, self.noise = members[0].target, members[0].noise
        self.conditioning = members[0].conditioning  # a conditional model's classes, joined to G's and D's inputs
        self.generator = StackedNets([m.generator for m in members])
        self.discriminator = StackedNets([m.discriminator for m in members])
        self.ema = copy.deepcopy(self.generator).requires_grad_(False)  # each member's EMA of G, for evaluation
        for name in SETTINGS:
            self.register_buffer(f"member_{name}", getattr(settings, name).clone())
        for name, values in settings.optimizer.items():  # an Adam cohort's: member_beta1, member_beta2
            self.register_buffer(f"member_{name}", values.clone())
        k = len(self.configs)
        self.register_buffer("member_iteration", torch.zeros(k, dtype=torch.int64))  # each member's own count
        self.register_buffer("member_alive", torch.ones(k, dtype=torch.bool))
        self.register_buffer("member_nonfinite_at", torch.full((k,), -1, dtype=torch.int64))  # first bad iteration
        self.register_buffer("member_last_losses", torch.full((k, 2), math.nan))  # D, G
        optim = STACKED_OPTIMIZERS[self.configs[0].optim.name]
        for net, nets in (("d", self.discriminator), ("g", self.generator)):
            for buffer, zeros in zip(self._optimizer_buffers(net), optim.zeros(nets.flat), strict=True):
                self.register_buffer(buffer, zeros)
        first = self.configs[0]
        self.batch_size, self.iterations = first.train.batch_size, first.train.iterations
        self.alive = [True] * k  # host-side copy of member_alive: masks are built without reading the device
        self.failures: dict[int, str] = {}
        # the cohort's own random stream on CPU (cohorts train in parallel worker processes, and its state
        # travels with it; a global stream would make the draws depend on where and in what order cohorts
        # train); CUDA draws from the device's default stream
        self.rng: torch.Generator | None = torch.Generator().manual_seed(
            int(first.train.seed) * 1_000_003 + int(self.keys[0]) % 1_000_003)
        self._derive()

    # -- structure -----------------------------------------------------------------------------------
    def _derive(self) -> None:
        """Host-side values read once per (re)assembly, never per iteration."""
        first = self.configs[0]
        self._schedule = SCHEDULES[first.optim.schedule].factor
        loss = LOSSES[first.train.loss]
        self._d_loss, self._g_loss = loss.discriminator, loss.generator  # [K, n, 1] logits -> [K] losses
        self._d_counts = self.member_d_steps.tolist()
        self._g_counts = self.member_g_steps.tolist()
        self._use_r1 = bool((self.member_r1_gamma > 0).any())
        # a minibatch D compares the samples of its batch: real and fake are two batches, not one
        self._joint_d = self.discriminator.net.judges_inputs_apart
        if self.discriminator.net.minibatch is not None:  # R1 differentiates it twice: its broadcast form
            self.discriminator.net.minibatch.twice_differentiable = self._use_r1
        self._optimizers: tuple[MemberRowsOptimizer, MemberRowsOptimizer] | None = None
        self._masks()

    def __getstate__(self) -> dict:
        """Without what :meth:`_derive` rebuilds (loss and schedule functions, optimizers, masks), so that a
        cohort can be pickled to a worker process (``cohort_processes.py``) or deep-copied."""
        state = self.__dict__.copy()
        for name in _DERIVED:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if self.configs:  # empty in a structure copy: assemble derives once it has filled the copy in
            self._derive()

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)
        self._optimizers = None  # buffers were replaced: lend the new ones to new optimizer objects
        self._masks()
        return out

    @property
    def members(self) -> int:
        return len(self.configs)

    @property
    def device(self) -> torch.device:
        return self.member_alive.device

    @classmethod
    def assemble(cls, parts: list[tuple[Cohort, list[int]]], extra: Cohort | None = None) -> Cohort | None:
        """A new cohort of the members ``index`` of each ``(cohort, index)`` part, then all of ``extra``'s:
        weights, optimizer state, settings and iteration counts carried over. None when no member is left."""
        parts = [(c, idx) for c, idx in parts if idx] + ([(extra, list(range(extra.members)))] if extra else [])
        if not parts:
            return None
        source = parts[0][0]
        tensors = [dict(c.named_parameters()) | dict(c.named_buffers()) for c, _ in parts]
        out = source._structure_copy(tensors[0].values())
        rng = source.rng
        out.rng = None if rng is None else torch.Generator().set_state(rng.get_state())
        picks = [torch.tensor(idx, device=c.device) for c, idx in parts]
        for name in list(tensors[0]):
            stacked = torch.cat([t[name].detach().index_select(0, pick.to(t[name].device))
                                 for t, pick in zip(tensors, picks, strict=True)])
            _set_tensor(out, name, stacked)
        out.configs = [c.configs[i] for c, idx in parts for i in idx]
        out.keys = [c.keys[i] for c, idx in parts for i in idx]
        out.alive = [c.alive[i] for c, idx in parts for i in idx]
        positions = {(id(c), i): n for n, (c, i) in enumerate((c, i) for c, idx in parts for i in idx)}
        out.failures = {positions[(id(c), i)]: reason for c, _ in parts for i, reason in c.failures.items()
                        if (id(c), i) in positions}
        out._derive()
        return out

    def _structure_copy(self, tensors) -> Cohort:
        """A deep copy of this cohort's modules with empty stand-ins for its per-member ``tensors`` and
        lists, which :meth:`assemble` replaces. Copying them only to throw them away took 85 % of a
        1,024-trial sweep's start-up (each member's config is an OmegaConf tree: ~5 ms to copy)."""
        memo: dict[int, Any] = {id(self.rng): None}  # a Generator cannot be deep-copied; assemble sets it
        for t in tensors:
            memo[id(t)] = nn.Parameter(t.new_empty(0), t.requires_grad) if isinstance(t, nn.Parameter) \
                else t.new_empty(0)
        for name in ("configs", "keys", "alive", "failures"):
            memo[id(getattr(self, name))] = type(getattr(self, name))()
        return copy.deepcopy(self, memo)

    def split_point(self) -> int | None:
        """Where :meth:`split` cuts: the change of key nearest the middle (members that share a key, a
        sweep trial's seeds, stay together), or None when every member has the same key."""
        cuts = [k for k in range(1, self.members) if self.keys[k] != self.keys[k - 1]]
        return min(cuts, key=lambda k: (abs(2 * k - self.members), k)) if cuts else None

    def split(self) -> tuple[Cohort, Cohort]:
        """Two cohorts of this one's members before and after :meth:`split_point`, about half each (so that
        workers can share a cohort that is most of a step's work). The second half draws from a stream
        forked off the first's."""
        half = self.split_point()
        if half is None:
            raise ValueError("a cohort whose members all share one key cannot be split")
        first = Cohort.assemble([(self, list(range(half)))])
        second = Cohort.assemble([(self, list(range(half, self.members)))])
        if first.rng is not None:
            second.rng.manual_seed(int(torch.randint(2**62, (1,), generator=first.rng)))
        return first, second

    def _optimizer_buffers(self, net: str) -> list[str]:
        """The names of network ``net``'s optimizer state buffers (``adam_d_steps``, ``adam_d_m``, ...): the
        checkpoint's keys, so they stay as they were when only Adam existed."""
        name = self.configs[0].optim.name
        return [f"{name}_{net}_{part}" for part in STACKED_OPTIMIZERS[name].state]

    def optimizers(self) -> tuple[MemberRowsOptimizer, MemberRowsOptimizer]:
        """The optimizer for D and for G over this cohort's own state tensors (rebuilt after a move or restack)."""
        if self._optimizers is None:
            made = []
            optim = STACKED_OPTIMIZERS[self.configs[0].optim.name]
            settings = {key: getattr(self, f"member_{key}") for key in optim.settings}
            pairs = (("d", self.discriminator, self.member_d_lr), ("g", self.generator, self.member_g_lr))
            for net, module, lr in pairs:
                state = [getattr(self, buffer) for buffer in self._optimizer_buffers(net)]
                made.append(optim.build(module.flat, lr, settings, state))
            self._optimizers = (made[0], made[1])
            self._set_rates()
        return self._optimizers

    # -- training --------------------------------------------------------------------------------------
    def _masks(self) -> None:
        """Per D and G step index: which members take it, as an index (None when all do). Members that
        sit a step out (fewer steps, or stopped) are left out of its computation too."""
        everyone = all(self.alive)

        def per_step(counts: list[int]) -> list[torch.Tensor | None]:
            out = []
            for step in range(max(counts)):
                takes = [c > step and ok for c, ok in zip(counts, self.alive, strict=True)]
                if everyone and all(takes):
                    out.append(None)
                elif any(takes):
                    out.append(torch.tensor([k for k, t in enumerate(takes) if t], device=self.device))
            return out

        self._d_masks, self._g_masks = per_step(self._d_counts), per_step(self._g_counts)
        taking = [len(self.alive) if index is None else len(index) for index in self._d_masks + self._g_masks]
        self.cost = self.batch_size * sum(taking)  # samples through the networks per iteration, roughly

    def _draw(self, sample_batches, index: torch.Tensor | None):
        """A batch for every member, [K, n, ...] (or a tuple of such, or None: nothing to draw), then the
        rows of the members ``index``: a member's draws do not depend on which others take the step (one
        member stopping leaves the others' data as it was)."""
        rng = self.rng if self.device.type == "cpu" else None
        batch = sample_batches(self.members, self.batch_size, self.device, generator=rng)
        if index is None or batch is None:
            return batch
        if isinstance(batch, tuple):
            return tuple(None if part is None else part.index_select(0, index) for part in batch)
        return batch.index_select(0, index)

    def _real_batches(self, k: int, n: int, device: torch.device,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """k batches of n target samples (i.i.d.: one draw of k * n) and, for a conditional model, their classes."""
        if not self.conditioning.classes:
            return self.target.sample(k * n, device, generator=generator).reshape(k, n, -1), None
        x, labels = self.target.sample_with_labels(k * n, device, generator=generator)
        return x.reshape(k, n, -1), labels.reshape(k, n)

    def _fake_labels(self, k: int, n: int, device: torch.device,
                     generator: torch.Generator | None) -> torch.Tensor | None:
        """[k, n] classes for generated samples, drawn as the real ones are; None (no draw) if unconditional."""
        labels = self.conditioning.draw_labels(self.target, k * n, device, generator)
        return None if labels is None else labels.reshape(k, n)

    def _fake(self, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The taking members' generated batches and the classes they were asked for (drawn in this order,
        as the single run draws them: classes, then noise)."""
        labels = self._draw(self._fake_labels, index)
        z = self._draw(self.noise.sample_batches, index)
        return self.generator(self.conditioning.join(z, labels)), labels

    def _judge(self, x: torch.Tensor, labels: torch.Tensor | None, **kwargs) -> torch.Tensor:
        """D's logits for x [K, n, dim] (given its classes, for a conditional model)."""
        return self.discriminator(self.conditioning.join(x, labels), **kwargs)

    def _only(self, index: torch.Tensor | None):
        """The networks restricted to the members ``index`` (all when None)."""
        if index is None:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(self.generator.only(index))
        stack.enter_context(self.discriminator.only(index))
        return stack

    def _r1(self, real: torch.Tensor, labels: torch.Tensor | None, gamma: torch.Tensor) -> torch.Tensor:
        """[K] R1 penalties, each member's on its own real batch in its own D's units (the gradient with
        respect to the samples, not their one-hot classes)."""
        input_std = self.discriminator.net.input_std  # [members, dim]: each member's own
        return r1_penalty(lambda x: self._judge(x, labels), real, gamma,
                          None if input_std is None else input_std.unsqueeze(1))

    @staticmethod
    def _update(optimizer: MemberRowsOptimizer, nets: StackedNets, losses: torch.Tensor,
                index: torch.Tensor | None) -> None:
        """The gradient of the (taking) members' summed losses for their weights, then their optimizer step."""
        (grad,) = torch.autograd.grad(losses.sum(), [nets.weights()])
        optimizer.update(grad, index)

    def _full(self, losses: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """[taking members] losses as [K] (0 for members that sat the step out)."""
        if index is None:
            return losses.detach()
        return torch.zeros(self.members, device=self.device).index_copy(0, index, losses.detach())

    def train_iteration(self) -> None:
        """One iteration of every live member: d_steps D updates, then g_steps G updates, EMA, schedule."""
        opt_d, opt_g = self.optimizers()
        self._set_rates()  # from the members' iteration counts: right whichever process trained them last
        d_loss = g_loss = torch.zeros(self.members, device=self.device)
        for step, index in enumerate(self._d_masks):
            with self._only(index):
                real, real_labels = self._draw(self._real_batches, index)
                with torch.no_grad():
                    fake, fake_labels = self._fake(index)
                both = torch.cat([real, fake], dim=1)
                labels = None if real_labels is None else torch.cat([real_labels, fake_labels], dim=1)
                logits = self._judge(both, labels) if self._joint_d else self._judge(both, labels, batch=real.shape[1])
                real_logits, fake_logits = logits.chunk(2, dim=1)
                target, gamma = self.member_real_target, self.member_r1_gamma
                if index is not None:
                    target, gamma = target.index_select(0, index), gamma.index_select(0, index)
                losses = self._d_loss(real_logits, fake_logits, target.view(-1, 1, 1))
                if self._use_r1:
                    losses = losses + self._r1(real, real_labels, gamma)
                self._update(opt_d, self.discriminator, losses, index)
            if step == 0:  # every live member takes the first step
                d_loss = self._full(losses, index)
        for step, index in enumerate(self._g_masks):
            with self._only(index):
                losses = self._g_loss(self._judge(*self._fake(index)))
                self._update(opt_g, self.generator, losses, index)
            if step == 0:
                g_loss = self._full(losses, index)
        self._update_ema()
        self.member_iteration += self.member_alive
        self._note_nonfinite(d_loss, g_loss)

    def _set_rates(self) -> None:
        """Each member's scheduled rates, written into the optimizers' own tensors (in place: a captured
        CUDA graph replays writes into the memory it recorded)."""
        opt_d, opt_g = self.optimizers()
        factor = self._schedule(self.member_iteration, self.iterations, self.member_final_lr_fraction)
        opt_d.lr.copy_(self.member_d_lr * factor)
        opt_g.lr.copy_(self.member_g_lr * factor)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Per member as ``ema_generator``: a copy at its first update, then decay min(d, (1+n)/(10+n))."""
        n = self.member_iteration.to(self.member_ema_decay.dtype)
        beta = torch.where(n == 0, torch.zeros_like(n), torch.minimum(self.member_ema_decay, (1.0 + n) / (10.0 + n)))
        beta = torch.where(self.member_alive, beta, torch.ones_like(beta))  # stopped members keep their EMA
        self.ema.flat.lerp_(self.generator.flat, (1.0 - beta).unsqueeze(1))

    @torch.no_grad()
    def _note_nonfinite(self, d_loss: torch.Tensor, g_loss: torch.Tensor) -> None:
        """On the device: the losses, and the first iteration at which a member's turned non-finite."""
        self.member_last_losses.copy_(torch.stack([d_loss, g_loss], dim=1))
        bad = ~torch.isfinite(self.member_last_losses).all(dim=1) & (self.member_nonfinite_at < 0)
        self.member_nonfinite_at.copy_(torch.where(bad, self.member_iteration, self.member_nonfinite_at))

    def collect_failures(self) -> dict[int, str]:
        """Read the device's notes (one synchronisation, at evaluation): members newly found non-finite
        are stopped (weights and optimizer state frozen) and returned with their reason."""
        found = {}
        for k, at in enumerate(self.member_nonfinite_at.tolist()):
            if at >= 0 and self.alive[k]:
                d, g = self.member_last_losses[k].tolist()
                found[k] = non_finite_reason(at, d, g, float(self.member_r1_gamma[k]))
        for k, reason in found.items():
            self.stop(k)
            self.failures[k] = reason
        return found

    def stop(self, k: int) -> None:
        """Member k trains no more (finished, pruned or failed); its slot is freed at the next assembly."""
        self.alive[k] = False
        self.member_alive[k] = False
        self._masks()

    def checkpoint_state(self) -> dict[str, Any]:
        """What continues this cohort exactly where it is: its tensors (weights, optimizer state, settings,
        counts), its random stream and its members' failures; plain tensors and containers only."""
        return {"tensors": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "rng": None if self.rng is None else self.rng.get_state(),
                "failures": {str(k): reason for k, reason in self.failures.items()}}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """The inverse of :meth:`checkpoint_state`, into a cohort built from the same configs."""
        self.load_state_dict(state["tensors"])
        if state["rng"] is not None:
            self.rng.set_state(state["rng"])
        self.failures = {int(k): reason for k, reason in state["failures"].items()}
        self.alive = self.member_alive.tolist()
        self._derive()

    def iterations_done(self) -> list[int]:
        return self.member_iteration.tolist()

    # -- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_eval(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Every member's samples from the same noise z [n, dim] (and classes [n], for a conditional model),
        with its EMA weights: [K, n, data_dim]."""
        inputs = self.conditioning.join(z, labels).to(self.device)
        return forward_in_chunks(self.ema, inputs.unsqueeze(0).expand(self.members, -1, -1))

    @torch.no_grad()
    def d_probability(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Each member's mean D(x) over x [K, n, dim] (given the classes [n], for a conditional model): [K].
        A minibatch D judges x as training batches on the first ``rows_judged_at_evaluation`` points, as
        the single-run evaluation does."""
        x = x.to(self.device)
        prepare = None
        if labels is not None:  # joined a chunk of members at a time: the real set is one expanded view until then
            labels = labels.to(self.device)
            prepare = lambda part: self.conditioning.join(part, labels[:part.shape[1]].expand(part.shape[0], -1))  # noqa: E731
        if self._joint_d:
            return torch.sigmoid(forward_in_chunks(self.discriminator, x, prepare=prepare)).mean(dim=(1, 2))
        batch = self.batch_size
        # the layer holds each sample's L1 distance to every sample of its batch, per kernel, three times
        # at once (the distances, their negatives, their exp)
        width = 3 * batch * self.discriminator.net.minibatch.kernels
        keep = rows_judged_at_evaluation(x.shape[1], batch)
        logits = forward_in_chunks(self.discriminator, x[:, :keep], width=width, prepare=prepare, batch=batch)
        return torch.sigmoid(logits).mean(dim=(1, 2))


def forward_in_chunks(net: StackedNets, x: torch.Tensor, width: int = 0, prepare=None, **kwargs) -> torch.Tensor:
    """``net(x, **kwargs)`` for x [K, n, features], a few members at a time when all at once would hold
    more than ``EVAL_CHUNK_BYTES`` of activations: evaluation runs G and D on ``eval_samples`` points per
    member (20,000 by default, 20x a training batch), which at K = 1,024 alone took 10 GB. ``width``: the
    floats a sample holds at once where that is more than two of its widest layer's. ``prepare``: applied
    to each chunk of x first (a conditional D's classes are joined there, not to all members at once)."""
    prepare = prepare or (lambda part: part)
    members, n = x.shape[0], x.shape[1]
    per_member = n * max(net.widest_layer * 2, width) * x.element_size()  # a layer's input and output live at once
    size = max(1, chunk_budget(x.device, EVAL_CHUNK_BYTES) // per_member)
    if size >= members:
        return net(prepare(x), **kwargs)
    parts = []
    for start in range(0, members, size):
        index = torch.arange(start, min(start + size, members), device=x.device)
        with net.only(index):
            parts.append(net(prepare(x[start:start + len(index)]), **kwargs))
    return torch.cat(parts)
