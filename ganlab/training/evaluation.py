"""Periodic evaluation on a fixed noise batch: metrics, progress lines, plots, all sent to the tracker."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch

from ganlab.metrics import headline, sample_metrics
from ganlab.nets.minibatch_discrimination import rows_judged_at_evaluation
from ganlab.training.gan_module import GANModule
from ganlab.training.history import History

EVAL_SEED_OFFSET = 7919  # fixed eval batches differ from, and never disturb, the training RNG


class Evaluator:
    """Holds the fixed evaluation noise, labels and real set; computes metrics and D's output maps."""

    def __init__(self, module: GANModule, n_samples: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
        preprocess = module.discriminator.preprocess
        n = n_samples if preprocess.per_sample else preprocess.groups(n_samples) * preprocess.batch_size
        self.noise = module.noise.sample(n, generator=gen)
        self.real, self.real_labels = module.target.sample_with_labels(n, generator=gen)
        # a conditional G is asked for the real set's classes, so every class is compared like for like
        self.fake_labels = self.real_labels if module.conditioning.classes else None
        self.reference = self.real.numpy()

    @staticmethod
    @torch.no_grad()
    def d_probability(module: GANModule, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """D(x) computed on chunks of one training batch, as D sees data in training: a minibatch
        layer compares every pair in its input, and a batch D needs whole groups."""
        if module.discriminator.minibatch is None:  # per-sample, or a batch D whose inputs form the groups
            return torch.sigmoid(module.discriminate(x, labels))
        batch = module.train_cfg.batch_size
        keep = rows_judged_at_evaluation(x.shape[0], batch)
        return torch.sigmoid(module.discriminate(x[:keep], None if labels is None else labels[:keep], batch=batch))

    @torch.no_grad()
    def evaluate(self, module: GANModule) -> tuple[dict[str, float], np.ndarray]:
        was_training = module.discriminator.training
        module.discriminator.eval()  # D's dropout (S5) off while it is measured, back on for training
        try:
            return self._evaluate(module)
        finally:
            module.discriminator.train(was_training)

    def _evaluate(self, module: GANModule) -> tuple[dict[str, float], np.ndarray]:
        fake = module.generate_eval(self.noise, self.fake_labels)
        labels = None if self.fake_labels is None else self.fake_labels.to(module.device)  # = the real set's
        d_real = self.d_probability(module, self.real.to(module.device), labels).mean()
        d_fake = self.d_probability(module, fake, labels).mean()
        samples = fake.float().cpu().numpy()
        labels = None if self.fake_labels is None else self.fake_labels.numpy()
        metrics = sample_metrics(samples, module.target, self.reference, labels,
                                 None if self.real_labels is None else self.real_labels.numpy())
        loss_d, loss_g = module.last_losses
        metrics.update(d_real=float(d_real), d_fake=float(d_fake), loss_d=loss_d, loss_g=loss_g)
        return metrics, samples

    @torch.no_grad()
    def decision_map(self, module: GANModule, points: np.ndarray, label: int | None) -> np.ndarray | None:
        """D(x) at (m, dim) points (given class ``label`` for a conditional D), for per-sample
        discriminators; a batch or packed D has no per-point output, so None."""
        if not module.discriminator.preprocess.per_sample:
            return None
        x = torch.as_tensor(points, dtype=torch.float32, device=module.device)
        labels = None
        if module.conditioning.classes:
            if label is None:  # the all-classes panel: D's view averaged over classes is not D; skip it
                return None
            labels = torch.full((len(x),), label, dtype=torch.long, device=module.device)
        joined = module.conditioning.join(x, labels)
        # a minibatch D's output depends on its batch: each x is judged among batch_size - 1 real samples
        context = self.real[: module.train_cfg.batch_size - 1].to(module.device)
        return torch.sigmoid(module.discriminator.in_context(joined, context)).squeeze(1).cpu().numpy()


class TrainingMonitor(pl.Callback):
    """Evaluates every ``eval_every`` iterations and plots every ``plot_every`` (and at the end)."""

    def __init__(self, evaluator: Evaluator, plotter, tracker, train_cfg, history: History,
                 print_interval_s: float = 2.0,
                 on_evaluate: Callable[[int, dict[str, float]], None] | None = None) -> None:
        self.evaluator, self.tracker, self.cfg, self.history = evaluator, tracker, train_cfg, history
        self.plotter = plotter
        self.on_evaluate = on_evaluate
        self.print_interval_s = print_interval_s
        self._last_print = 0.0
        self._start, self._first = time.perf_counter(), 0

    def on_train_start(self, trainer: pl.Trainer, module: GANModule) -> None:
        self._start, self._first = time.perf_counter(), module.iteration
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
            labels = None if self.evaluator.fake_labels is None else self.evaluator.fake_labels.numpy()
            frame = self.plotter.frame(samples, labels, it,
                                       lambda points, k: self.evaluator.decision_map(module, points, k))
            self.history.frames.append(frame)
            self.tracker.log_frame(frame, metrics, f"plots/{self.plotter.animation_name}_{it:06d}.png")
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
        rate = (it - self._first) / max(now - self._start, 1e-9)
        width = len(str(self.cfg.iterations))
        # before the first update there are no losses yet: "loss D nan" there read as a diverged run
        after = (f"loss D {m['loss_d']:.3f} G {m['loss_g']:.3f}  ({rate:.0f} it/s)" if it > self._first
                 else "(before training)")
        print(f"[it {it:>{width}}/{self.cfg.iterations}] {headline(m)}  "
              f"D(x) {m['d_real']:.2f} D(G(z)) {m['d_fake']:.2f}  {after}", flush=True)
