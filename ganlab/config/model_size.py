"""How much memory a config's networks need, estimated from the config alone (nothing is built), so
that a network too large for the machine is a one-line error before anything trains."""

from __future__ import annotations

from omegaconf import DictConfig

BYTES = 4  # float32
G_COPIES = 5  # weights, gradients, Adam's two moments, the EMA copy
D_COPIES = 4  # weights, gradients, Adam's two moments


def _weights(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))


def estimated_training_bytes(cfg: DictConfig) -> int:
    """Weights, gradients and optimiser state of G and D, plus one batch of activations; a lower bound
    good to an order of magnitude (the first layers' widths depend on the model and preprocessing)."""
    from ganlab.data.targets import TARGETS

    dim = TARGETS[cfg.data.name].dim
    group = max(int(cfg.preprocess.get("group_size", 0) or cfg.preprocess.get("m", 0) or 1), 1)
    g_widths = [int(cfg.noise.dim or 1), *cfg.model.g.hidden, dim]
    d_widths = [dim * group, *cfg.model.d.hidden, 1]
    activations = cfg.train.batch_size * (sum(cfg.model.g.hidden) + sum(cfg.model.d.hidden)) * 3
    return BYTES * (G_COPIES * _weights(g_widths) + D_COPIES * _weights(d_widths) + activations)


def available_memory_bytes() -> int | None:
    """Memory the system can give this process now (None where psutil cannot tell)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 -- no estimate: no check
        return None
