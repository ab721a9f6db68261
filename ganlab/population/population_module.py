"""The population loop: K GANs of one architecture trained together, a LightningModule with manual
optimization (the same alternation as ``GANModule``: d_steps D updates, then g_steps G updates).

Each member is built exactly as its standalone run builds it (same seed, same initial weights), then
the members' weights are stacked (``StackedNets``) and updated by ``StackedAdam`` with their own
rates. Members with fewer steps than the population's most sit the extra steps out (masked: weights
and Adam state unchanged). A member whose loss turns NaN or infinite is stopped and recorded in
``failures``; the others go on. Losses are per member and summed for backward, so one member's
gradients never depend on another's.
"""

from __future__ import annotations

import copy
import math

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ganlab.population.member_settings import MemberSettings, member_settings
from ganlab.population.stacked_adam import StackedAdam
from ganlab.population.stacked_nets import StackedNets
from ganlab.training.losses import LOSSES
from ganlab.training.optimizers import SCHEDULES


def _build_member(cfg: DictConfig):
    from ganlab.training.runner import build_module  # the single-run builder: one home for building nets

    pl.seed_everything(cfg.train.seed, verbose=False)
    return build_module(cfg)


class PopulationModule(pl.LightningModule):
    def __init__(self, configs: list[DictConfig]) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.configs = configs
        self.settings: MemberSettings = member_settings(configs)
        members = [_build_member(cfg) for cfg in configs]
        first = configs[0]
        self.target, self.noise = members[0].target, members[0].noise
        self.generator = StackedNets([m.generator for m in members])
        self.discriminator = StackedNets([m.discriminator for m in members])
        self.ema = copy.deepcopy(self.generator).requires_grad_(False)  # each member's EMA of G, for evaluation
        s = self.settings
        for name in ("d_lr", "g_lr", "beta1", "beta2", "final_lr_fraction", "real_target", "ema_decay", "r1_gamma"):
            self.register_buffer(f"member_{name}", getattr(s, name).clone())
        self.register_buffer("alive", torch.ones(self.members, dtype=torch.bool))
        self.iteration = 0
        self.failures: dict[int, str] = {}
        self.last_losses = torch.full((2, self.members), math.nan)
        self._batch, self._iterations = first.train.batch_size, first.train.iterations
        self._schedule = SCHEDULES[first.optim.schedule].factor
        loss = LOSSES[first.train.loss]
        self._d_loss, self._g_loss = loss.discriminator, loss.generator  # [K, n, 1] logits -> [K] losses
        self._d_steps, self._g_steps = s.d_steps.tolist(), s.g_steps.tolist()
        self._use_r1 = bool((s.r1_gamma > 0).any())

    @property
    def members(self) -> int:
        return len(self.configs)

    def configure_optimizers(self):
        opt_d = StackedAdam(self.discriminator.parameters(), self.member_d_lr, self.member_beta1, self.member_beta2)
        opt_g = StackedAdam(self.generator.parameters(), self.member_g_lr, self.member_beta1, self.member_beta2)
        return [opt_d, opt_g]

    def _masks(self, counts: list[int]) -> list[torch.Tensor | None]:
        """Per step index, which members take that step (None: all of them, no masking needed)."""
        all_alive = not self.failures
        out = []
        for step in range(max(counts)):
            takes = [c > step for c in counts]
            out.append(None if all_alive and all(takes) else
                       torch.tensor(takes, device=self.device) & self.alive)
        return out

    def _draw(self, sample) -> torch.Tensor:
        k, n = self.members, self._batch
        return sample(k * n, self.device).reshape(k, n, -1)

    def _r1(self, real: torch.Tensor) -> torch.Tensor:
        """Per member: gamma / 2 * E||grad_x D(x)||^2 on its real batch (as ``r1_penalty``)."""
        real = real.detach().requires_grad_(True)
        logits = self.discriminator(real)
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        return 0.5 * self.member_r1_gamma * grad.pow(2).sum(dim=(1, 2)) / logits.shape[1]

    @staticmethod
    def _update(optimizer: StackedAdam, losses: torch.Tensor, mask: torch.Tensor | None) -> None:
        optimizer.zero_grad()
        total = losses.sum() if mask is None else torch.where(mask, losses, torch.zeros_like(losses)).sum()
        total.backward(inputs=list(optimizer.params))
        optimizer.step(mask=mask)

    def training_step(self, batch, batch_idx: int) -> None:
        opt_d, opt_g = (o.optimizer for o in self.optimizers())
        for mask in self._masks(self._d_steps):
            real = self._draw(self.target.sample)
            with torch.no_grad():
                fake = self.generator(self._draw(self.noise.sample))
            real_logits, fake_logits = self.discriminator(torch.cat([real, fake], dim=1)).chunk(2, dim=1)
            d_loss = self._d_loss(real_logits, fake_logits, self.member_real_target.view(-1, 1, 1))
            if self._use_r1:
                d_loss = d_loss + self._r1(real)
            self._update(opt_d, d_loss, mask)
        for mask in self._masks(self._g_steps):
            g_loss = self._g_loss(self.discriminator(self.generator(self._draw(self.noise.sample))))
            self._update(opt_g, g_loss, mask)
        self._update_ema()
        self.iteration += 1
        factor = self._schedule(self.iteration, self._iterations, self.member_final_lr_fraction)
        opt_d.lr, opt_g.lr = self.member_d_lr * factor, self.member_g_lr * factor
        self._check_finite(d_loss.detach(), g_loss.detach())

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Per member as ``ema_generator``: a copy at the first update, then decay min(d, (1+n)/(10+n))."""
        n = self.iteration
        if n == 0:
            beta = torch.zeros_like(self.member_ema_decay)
        else:
            beta = torch.clamp(self.member_ema_decay, max=(1.0 + n) / (10.0 + n))
        for ema, w in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
            ema.lerp_(w, (1.0 - beta).reshape(-1, *([1] * (w.dim() - 1))))

    def _check_finite(self, d_loss: torch.Tensor, g_loss: torch.Tensor) -> None:
        self.last_losses = torch.stack([d_loss, g_loss]).cpu()  # one host sync per iteration
        bad = ~torch.isfinite(self.last_losses).all(dim=0) & self.alive.cpu()
        for k in torch.nonzero(bad).flatten().tolist():
            d, g = self.last_losses[:, k].tolist()
            self.failures[k] = (f"loss became non-finite at iteration {self.iteration} (D {d}, G {g}); "
                                "try a smaller learning rate")
            self.alive[k] = False

    @torch.no_grad()
    def generate_eval(self, z: torch.Tensor) -> torch.Tensor:
        """Every member's samples from the same noise z [n, dim], with its EMA weights: [K, n, data_dim]."""
        z = z.to(self.device).unsqueeze(0).expand(self.members, -1, -1)
        return self.ema(z)

    @torch.no_grad()
    def d_probability(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's mean D(x) over x [K, n, dim]: [K]."""
        return torch.sigmoid(self.discriminator(x.to(self.device))).mean(dim=(1, 2))
