"""What may differ between the members of one population, and what they must share.

A population trains K configs together. The networks' shapes, the data, noise, D input, loss,
optimizer and schedule kind, run length and batch size are shared (one stacked tensor per weight needs
one shape, and one batch of noise a common size); learning rates, the optimizer's own settings (Adam's
betas, SGD's momentum), step counts, label smoothing, EMA decay, R1 gamma, the schedule's final
fraction and the seed are per member.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ganlab.data.targets import TARGETS
from ganlab.errors import ConfigError
from ganlab.population.stacked_optimizers import STACKED_OPTIMIZERS
from ganlab.training.optimizers import short_run_boost

MAX_SEEDS = 4096  # members of one `train.seeds` run
SHARED_KEYS = ("data", "noise", "preprocess", "model", "train.batch_size", "train.iterations", "train.loss",
               "train.eval_every", "train.plot_every", "train.eval_samples", "train.accelerator", "optim.name",
               "optim.schedule")


@dataclass(frozen=True)
class MemberSettings:
    """The per-member values as [K] tensors (float32 unless said)."""

    seeds: list[int]
    d_lr: torch.Tensor
    g_lr: torch.Tensor
    final_lr_fraction: torch.Tensor
    d_steps: torch.Tensor  # int64
    g_steps: torch.Tensor  # int64
    real_target: torch.Tensor  # 1 - label_smoothing
    ema_decay: torch.Tensor
    r1_gamma: torch.Tensor
    optimizer: dict[str, torch.Tensor]  # the optimizer's per-member settings (STACKED_OPTIMIZERS), by optim key


def _value(cfg: DictConfig, dotted: str):
    node = OmegaConf.select(cfg, dotted)
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def cohort_signature(cfg: DictConfig) -> str:
    """What members must have in common to share a cohort (``SHARED_KEYS``), as one comparable string."""
    return json.dumps({key: _value(cfg, key) for key in SHARED_KEYS}, sort_keys=True, default=str)


def unsupported_reason(cfg: DictConfig) -> str | None:
    """Why this config cannot join a population (then it trains alone), or None."""
    if TARGETS[cfg.data.name].family == "images":
        return f"data={cfg.data.name} (an image dataset) is not supported by population training yet"
    if cfg.optim.name not in STACKED_OPTIMIZERS:
        return (f"optim={cfg.optim.name} is not supported by population training yet "
                f"({', '.join(STACKED_OPTIMIZERS.names)} only)")
    if any(cfg.model.g.batch_norm) or any(cfg.model.d.batch_norm) or cfg.model.g.dropout or cfg.model.d.dropout:
        return "batch norm or dropout is not supported by population training yet"
    return None


def member_configs(cfg: DictConfig) -> list[DictConfig]:
    """A train.seeds run's members: one config per seed, train.seed, train.seed + 1, ... (each with
    train.seeds=1, as if run alone)."""
    out = []
    for k in range(cfg.train.seeds):
        member = cfg.copy()
        with open_dict(member):
            member.train.seed, member.train.seeds = cfg.train.seed + k, 1
        out.append(member)
    return out


def member_settings(configs: list[DictConfig]) -> MemberSettings:
    """Check that the configs can share a population and gather what differs, as tensors."""
    if not configs:
        raise ConfigError("a population needs at least one member")
    for cfg in configs:
        reason = unsupported_reason(cfg)
        if reason:
            raise ConfigError(reason)
    first = configs[0]
    for key in SHARED_KEYS:
        for k, cfg in enumerate(configs[1:], start=1):
            if _value(cfg, key) != _value(first, key):
                raise ConfigError(f"member {k} differs from member 0 in {key}; members of one population share "
                                  f"{', '.join(SHARED_KEYS)}")

    def floats(get) -> torch.Tensor:
        return torch.tensor([float(get(c)) for c in configs], dtype=torch.float32)

    iterations = first.train.iterations
    return MemberSettings(
        seeds=[int(c.train.seed) for c in configs],
        d_lr=floats(lambda c: c.optim.d_lr * short_run_boost(c.optim, iterations)),
        g_lr=floats(lambda c: c.optim.g_lr * short_run_boost(c.optim, iterations)),
        final_lr_fraction=floats(lambda c: c.optim.final_lr_fraction),
        d_steps=torch.tensor([c.train.d_steps for c in configs]),
        g_steps=torch.tensor([c.train.g_steps for c in configs]),
        real_target=floats(lambda c: 1.0 - c.train.label_smoothing),
        ema_decay=floats(lambda c: c.train.ema_decay), r1_gamma=floats(lambda c: c.train.r1_gamma),
        optimizer={key: floats(lambda c, key=key: c.optim[key])
                   for key in STACKED_OPTIMIZERS[first.optim.name].settings},
    )
