"""The one GAN training loop: a LightningModule with manual optimization.

Every variant (per-sample or batch discriminator, any target, noise, loss, stabiliser) runs through
:meth:`GANModule.training_step`: one call is one *iteration* = ``d_steps`` D updates (G detached),
then ``g_steps`` G updates. Progress is counted in iterations (``self.iteration``), not in
Lightning's ``global_step``, which counts optimizer steps.
"""

from __future__ import annotations

import math
from functools import partial

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch import nn

from ganlab.data.noise import Noise
from ganlab.data.targets import Target
from ganlab.generator_sampling import SAMPLE_CHUNK, draw_samples, generate_eval
from ganlab.nets.conditioning import LabelConditioning
from ganlab.training.checkpoints import set_rng_states
from ganlab.training.losses import LOSSES
from ganlab.training.optimizers import make_optimizer, make_schedule, short_run_boost, stretch_schedule
from ganlab.training.stabilizers import ema_generator, non_finite_reason, r1_penalty


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: training stops at once."""


class GANModule(pl.LightningModule):
    def __init__(self, generator: nn.Module, discriminator: nn.Module, target: Target, noise: Noise,
                 train_cfg, optim_cfg, conditioning: LabelConditioning | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = generator, discriminator
        self.target, self.noise = target, noise
        self.conditioning = conditioning or LabelConditioning(0)
        self.train_cfg, self.optim_cfg = train_cfg, optim_cfg
        self.ema = ema_generator(generator, train_cfg.ema_decay) if train_cfg.ema_decay > 0 else None
        self.iteration = 0
        self.last_losses: tuple[float, float] = (math.nan, math.nan)
        self._real_target = 1.0 - train_cfg.label_smoothing
        # the loop's settings as plain Python values: a DictConfig attribute read costs ~10 us, and the
        # loop reads these every optimizer step
        self._batch, self._d_steps, self._g_steps = train_cfg.batch_size, train_cfg.d_steps, train_cfg.g_steps
        self._r1_gamma = float(train_cfg.r1_gamma)
        self._loss = LOSSES[train_cfg.loss]
        # D(real) and D(fake) in one call where that gives the same logits: half the D calls and
        # autograd nodes of a D step
        self._joint_d = discriminator.judges_inputs_apart
        self._g_params = [p for p in generator.parameters() if p.requires_grad]
        self._d_params = [p for p in discriminator.parameters() if p.requires_grad]
        self._direct_steps = False
        self._resume_state: dict | None = None

    def load_training_state(self, state: dict) -> None:
        """Continue from a checkpoint: weights and counters now, optimiser, schedule and RNG states in
        :meth:`on_train_start`, once Lightning has built the optimisers."""
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.iteration = int(state["iteration"])
        self.last_losses = tuple(state["last_losses"])
        self._resume_state = state

    def on_train_start(self) -> None:
        # Lightning's manual_backward/opt.step wrappers cost ~0.2 ms per call, as much as a whole
        # step of these tiny nets. On one device in full precision they add nothing (no loss
        # scaling, no gradient sync), so the loop then calls backward() and the optimizer directly.
        strategy, precision = self.trainer.strategy, self.trainer.precision
        self._direct_steps = isinstance(strategy, SingleDeviceStrategy) and precision in ("32-true", "32")
        if self._resume_state is not None:
            self._restore_optimisation(self._resume_state)
            self._resume_state = None

    def _restore_optimisation(self, state: dict) -> None:
        for optimizer, saved in zip(self.optimizers(), state["optimizers"], strict=True):
            optimizer.optimizer.load_state_dict(saved)
        for schedule, saved in zip(self.schedules(), state["schedules"], strict=True):
            schedule.load_state_dict(saved)
            if state["iterations"] != self.train_cfg.iterations:  # the run was extended
                stretch_schedule(schedule, self.optim_cfg, self.train_cfg.iterations)
        set_rng_states(state["rng"])  # last: nothing before the first step may draw from them

    def _update(self, loss: torch.Tensor, optimizer, params: list[torch.Tensor]) -> None:
        """One optimizer step on ``params``. Backward computes their gradients only: a G step does not
        also work out D's weight gradients, which nothing would use (the next D step zeroes them)."""
        optimizer.zero_grad(set_to_none=True)
        if self._direct_steps:
            loss.backward(inputs=params)
            optimizer.optimizer.step()
        else:
            self.manual_backward(loss, inputs=params)
            optimizer.step()

    def schedules(self) -> list:
        """The learning-rate schedules as a list (Lightning returns None, one, or a list)."""
        schedules = self.lr_schedulers()
        return [] if schedules is None else schedules if isinstance(schedules, list) else [schedules]

    @property
    def eval_generator(self) -> nn.Module:
        """The generator used for metrics, plots and samples: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.generator

    def replace_eval_generator(self, generator: nn.Module) -> None:
        """Sample from another G (a loaded MLflow Model): it becomes the generator, with no EMA copy."""
        self.ema = None
        self.generator = generator

    def configure_optimizers(self):
        boost = short_run_boost(self.optim_cfg, self.train_cfg.iterations)
        opt_d = make_optimizer(self.optim_cfg, self.discriminator.parameters(), boost * self.optim_cfg.d_lr)
        opt_g = make_optimizer(self.optim_cfg, self.generator.parameters(), boost * self.optim_cfg.g_lr)
        schedules = [make_schedule(self.optim_cfg, o, self.train_cfg.iterations) for o in (opt_d, opt_g)]
        if schedules[0] is None:
            return [opt_d, opt_g]
        return [opt_d, opt_g], schedules

    def fake_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Classes for n generated samples, drawn like the real ones (None for an unconditional model)."""
        return self.conditioning.draw_labels(self.target, n, self.device, generator)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                 generator: nn.Module | None = None) -> torch.Tensor:
        """G(z | labels); ``generator`` picks another copy of G (the EMA one for evaluation)."""
        return (generator or self.generator)(self.conditioning.join(z, labels))

    def generate_eval(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Samples from the evaluation generator (EMA if on) in eval mode, G's train mode restored after."""
        return generate_eval(self.eval_generator, self.conditioning, z, labels, self.device)

    def sample(self, n: int, generator: torch.Generator | None = None, label: int | None = None,
               chunk: int = SAMPLE_CHUNK) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n samples from the evaluation generator (:func:`~ganlab.generator_sampling.draw_samples`)."""
        return draw_samples(self.eval_generator, self.conditioning, self.noise, self.target, n, generator, label,
                            chunk, self.device)

    def generator_input_example(self, n: int = 8) -> torch.Tensor:
        """n inputs of G as its MLflow Model takes them: noise, then the one-hot class if conditional."""
        return self.conditioning.input_example(self.noise, self.target, n)

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """D's logits for x (given its labels, for a conditional model)."""
        return self.discriminator(self.conditioning.join(x, labels), **kwargs)

    def _fake(self, n: int, labels: torch.Tensor | None) -> torch.Tensor:
        return self.generate(self.noise.sample(n, self.device), labels)

    def _real_batch(self, batch, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Real samples for D step ``step``: a slice of the loader's rows for a dataset, or fresh
        samples from a synthetic target (whose loader item is just the iteration number)."""
        if isinstance(batch, (list, tuple)):
            rows = slice(step * n, (step + 1) * n)
            return batch[0][rows], batch[1][rows]
        return self.target.sample_with_labels(n, self.device)

    def _judge(self, real: torch.Tensor, real_labels: torch.Tensor | None, fake: torch.Tensor,
               fake_labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """D's logits for a real and a fake batch: one D call on both where D judges inputs apart."""
        if not self._joint_d:
            return self.discriminate(real, real_labels), self.discriminate(fake, fake_labels)
        labels = torch.cat([real_labels, fake_labels]) if self.conditioning.classes else None  # else unused
        logits = self.discriminate(torch.cat([real, fake]), labels)
        return logits.split(logits.shape[0] // 2)

    def training_step(self, batch, batch_idx: int) -> None:
        n, loss = self._batch, self._loss
        opt_d, opt_g = self.optimizers()

        for step in range(self._d_steps):
            real, real_labels = self._real_batch(batch, step, n)
            fake_labels = self.fake_labels(n)
            with torch.no_grad():
                fake = self._fake(n, fake_labels)
            real_logits, fake_logits = self._judge(real, real_labels, fake, fake_labels)
            d_loss = loss.discriminator(real_logits, fake_logits, self._real_target)
            if self._r1_gamma > 0:
                d_loss = d_loss + r1_penalty(partial(self.discriminate, labels=real_labels), real, self._r1_gamma,
                                               self.discriminator.input_std)
            self._update(d_loss, opt_d, self._d_params)

        for _ in range(self._g_steps):
            fake_labels = self.fake_labels(n)
            g_loss = loss.generator(self.discriminate(self._fake(n, fake_labels), fake_labels))
            self._update(g_loss, opt_g, self._g_params)

        if self.ema is not None:
            self.ema.update_parameters(self.generator)
        for schedule in self.schedules():
            schedule.step()

        self.iteration += 1
        d_value, g_value = float(d_loss.detach()), float(g_loss.detach())  # one host sync per iteration, not per step
        self.last_losses = (d_value, g_value)
        if not (math.isfinite(d_value) and math.isfinite(g_value)):
            raise NonFiniteLossError(non_finite_reason(self.iteration, d_value, g_value, self._r1_gamma))
