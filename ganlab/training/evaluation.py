"""Periodic evaluation on a fixed noise batch: metrics, progress lines, plots, all sent to the tracker."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytorch_lightning as pl
import torch

from ganlab.metrics.metrics_1d import sample_metrics
from ganlab.plots.plots_1d import HistogramFrame, histogram_figure, histogram_frame
from ganlab.training.gan_module import GANModule

EVAL_SEED_OFFSET = 7919  # fixed eval batches differ from, and never disturb, the training RNG


@dataclass
class History:
    """Metric values per evaluated iteration, and histogram frames per plotted iteration."""

    rows: list[dict[str, float]] = field(default_factory=list)
    frames: list[HistogramFrame] = field(default_factory=list)

    def last(self) -> dict[str, float]:
        return self.rows[-1] if self.rows else {}


class Evaluator:
    """Holds the fixed evaluation noise and real batch; computes metrics and D's output curve."""

    def __init__(self, module: GANModule, n_samples: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
        groups = module.discriminator.inputs.groups(n_samples)
        n = n_samples if module.discriminator.inputs.per_sample else groups * module.discriminator.inputs.batch_size
        self.noise = module.noise.sample(n, generator=gen)
        self.real = module.target.sample(n, generator=gen)

    @torch.no_grad()
    def generate(self, module: GANModule) -> torch.Tensor:
        generator = module.eval_generator
        was_training = generator.training
        generator.eval()
        out = generator(self.noise.to(module.device))
        generator.train(was_training)
        return out

    @staticmethod
    @torch.no_grad()
    def d_probability(module: GANModule, x: torch.Tensor) -> torch.Tensor:
        """D(x) computed on chunks of one training batch, as D sees data in training: a minibatch
        layer compares every pair in its input, and a batch D needs whole groups."""
        disc = module.discriminator
        if disc.minibatch is None:  # per-sample, or a batch D whose inputs already form the groups
            return torch.sigmoid(disc(x))
        batch = module.train_cfg.batch_size
        return torch.sigmoid(disc(x[: x.shape[0] // batch * batch], batch=batch))

    @torch.no_grad()
    def evaluate(self, module: GANModule) -> tuple[dict[str, float], np.ndarray]:
        fake = self.generate(module)
        d_real = self.d_probability(module, self.real.to(module.device)).mean()
        d_fake = self.d_probability(module, fake).mean()
        samples = fake.float().cpu().numpy().ravel()
        metrics = sample_metrics(samples, module.target)
        loss_d, loss_g = module.last_losses
        metrics.update(d_real=float(d_real), d_fake=float(d_fake), loss_d=loss_d, loss_g=loss_g)
        return metrics, samples

    @torch.no_grad()
    def decision_curve(self, module: GANModule, xs: np.ndarray) -> np.ndarray | None:
        """D(x) over a grid, for per-sample discriminators (a batch D has no per-x output)."""
        if not module.discriminator.inputs.per_sample:
            return None
        grid = torch.as_tensor(xs, dtype=torch.float32, device=module.device).unsqueeze(1)
        # a minibatch D's output depends on its batch: each x is judged among batch_size - 1 real samples
        context = self.real[: module.train_cfg.batch_size - 1].to(module.device)
        return torch.sigmoid(module.discriminator.in_context(grid, context)).squeeze(1).cpu().numpy()


class TrainingMonitor(pl.Callback):
    """Evaluates every ``eval_every`` iterations and plots every ``plot_every`` (and at the end)."""

    def __init__(self, evaluator: Evaluator, tracker, train_cfg, history: History,
                 print_interval_s: float = 2.0,
                 on_evaluate: Callable[[int, dict[str, float]], None] | None = None) -> None:
        self.evaluator, self.tracker, self.cfg, self.history = evaluator, tracker, train_cfg, history
        self.on_evaluate = on_evaluate
        self.print_interval_s = print_interval_s
        self._last_print = 0.0
        self._start = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, module: GANModule) -> None:
        self._start = time.perf_counter()
        if module.iteration == 0:
            self.evaluate(module, plot=True)

    def on_train_batch_end(self, trainer, module: GANModule, outputs, batch, batch_idx: int) -> None:
        it, last = module.iteration, module.iteration >= self.cfg.iterations
        if it % self.cfg.eval_every == 0 or last:
            self.evaluate(module, plot=it % self.cfg.plot_every == 0 or last)

    def evaluate(self, module: GANModule, plot: bool) -> None:
        metrics, samples = self.evaluator.evaluate(module)
        it = module.iteration
        self.history.rows.append({"iteration": it, **metrics})
        self.tracker.log_metrics(metrics, step=it)
        if plot:
            frame = histogram_frame(samples, module.target, it,
                                    lambda xs: self.evaluator.decision_curve(module, xs))
            self.history.frames.append(frame)
            fig = histogram_figure(frame, module.target, metrics)
            self.tracker.log_figure(fig, f"plots/histogram_{it:06d}.png")
        self._progress(it, metrics)
        if self.on_evaluate is not None:
            self.on_evaluate(it, metrics)

    def _progress(self, it: int, m: dict[str, float]) -> None:
        now = time.perf_counter()
        if self.print_interval_s == float("inf"):
            return
        if now - self._last_print < self.print_interval_s and it not in (0, self.cfg.iterations):
            return
        self._last_print = now
        rate = it / max(now - self._start, 1e-9)
        width = len(str(self.cfg.iterations))
        print(f"[it {it:>{width}}/{self.cfg.iterations}] KS {m['ks']:.4f}  W1/std {m['w1_over_std']:.4f}  "
              f"mean {m['mean']:.3f} std {m['std']:.3f}  D(x) {m['d_real']:.2f} D(G(z)) {m['d_fake']:.2f}  "
              f"loss D {m['loss_d']:.3f} G {m['loss_g']:.3f}  ({rate:.0f} it/s)", flush=True)
