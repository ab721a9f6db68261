"""Optimizer steps per second of ganlab's Lightning loop vs a minimal plain-PyTorch loop, same work.

Both loops train ``experiment=devnag_moments`` (20 D + 20 G steps per iteration, batch 500) with
the same networks, sampling, losses and optimizers, one torch thread, in one process, alternating
ganlab / plain several times so machine noise hits both alike. The ratio is of the medians.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time

import torch

from ganlab.config.compose import compose_config
from ganlab.training.losses import discriminator_loss, generator_loss
from ganlab.training.optimizers import make_optimizer
from ganlab.training.runner import build_module, run_training


def _config(iterations: int):
    return compose_config(["experiment=devnag_moments", f"train.iterations={iterations}",
                           f"train.eval_every={10 * iterations}", f"train.plot_every={10 * iterations}",
                           "train.eval_samples=500"])


def plain_loop(iterations: int) -> float:
    """The same work as GANModule.training_step, written as a bare loop. Returns steps per second."""
    cfg = _config(iterations)
    torch.manual_seed(cfg.train.seed)
    module = build_module(cfg)
    g, d, target, noise, t = module.generator, module.discriminator, module.target, module.noise, cfg.train
    opt_d = make_optimizer(cfg.optim, d.parameters(), cfg.optim.d_lr)
    opt_g = make_optimizer(cfg.optim, g.parameters(), cfg.optim.g_lr)
    n = t.batch_size
    start = time.perf_counter()
    for _ in range(iterations):
        for _ in range(t.d_steps):
            real = target.sample(n)
            with torch.no_grad():
                fake = g(noise.sample(n))
            loss_d = discriminator_loss(t.loss, d(real), d(fake))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        for _ in range(t.g_steps):
            loss_g = generator_loss(t.loss, d(g(noise.sample(n))))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        if not (math.isfinite(float(loss_d.detach())) and math.isfinite(float(loss_g.detach()))):
            raise RuntimeError("diverged")
    elapsed = time.perf_counter() - start
    return iterations * (t.d_steps + t.g_steps) / elapsed


def ganlab_loop(iterations: int) -> float:
    cfg = _config(iterations)
    result = run_training(cfg, verbose=False)
    return iterations * (cfg.train.d_steps + cfg.train.g_steps) / result.fit_s


def run(iterations: int = 400, repeats: int = 5) -> dict:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        ganlab_loop(20)  # warm-up: imports, store creation
        plain_loop(20)
        ours, plain = [], []
        for i in range(repeats):
            ours.append(ganlab_loop(iterations))
            plain.append(plain_loop(iterations))
            print(f"  overhead repeat {i + 1}/{repeats}: ganlab {ours[-1]:.0f} steps/s, plain {plain[-1]:.0f} steps/s",
                  flush=True)
        os.environ.pop("MLFLOW_TRACKING_URI")
    return {
        "experiment": "devnag_moments", "iterations_per_run": iterations, "repeats": repeats,
        "ganlab_steps_per_s": ours, "plain_steps_per_s": plain,
        "ganlab_median": statistics.median(ours), "plain_median": statistics.median(plain),
        "ratio": statistics.median(ours) / statistics.median(plain), "target_ratio": 0.9,
    }
