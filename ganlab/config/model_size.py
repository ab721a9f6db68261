"""How much memory a config's networks need, estimated from the config alone (nothing is built), so
that a network too large for the machine is a one-line error before anything trains."""

from __future__ import annotations

from omegaconf import DictConfig

BYTES = 4  # float32
G_COPIES = 5  # weights, gradients, Adam's two moments (SGD keeps one buffer: a copy too many), the EMA copy
D_COPIES = 4  # weights, gradients, Adam's two moments


def _weights(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))


def estimated_training_bytes(cfg: DictConfig) -> int:
    """Weights, gradients and optimiser state of G and D, plus one batch of activations; a lower bound
    good to an order of magnitude (the first layers' widths depend on the model and preprocessing)."""
    from ganlab.data.targets import TARGETS
    from ganlab.nets.models import MODELS

    dim = TARGETS[cfg.data.name].dim
    batch = cfg.train.batch_size
    group = max(int(cfg.preprocess.get("group_size", 0) or cfg.preprocess.get("m", 0) or 1), 1)
    g_widths = [int(cfg.noise.dim or 1), *cfg.model.g.hidden, dim]
    d_widths = [dim * group, *cfg.model.d.hidden, 1]
    # forward outputs, what backward keeps of them, and their gradients; D sees one row per group
    activations = 3 * (batch * sum(cfg.model.g.hidden) + batch // group * sum(cfg.model.d.hidden))
    if MODELS[cfg.model.name].minibatch:  # each sample's L1 distance to every sample of its batch, per
        # kernel, for a real and a fake batch: cdist's output, exp, neg and a gradient; in the form R1 needs,
        # per kernel coordinate too, with what its double backward keeps (measured: docs/population.md#memory)
        r1 = cfg.train.r1_gamma > 0
        activations += 2 * (5 * cfg.model.kernel_dim if r1 else 4) * batch * batch * cfg.model.kernels
    return BYTES * (G_COPIES * _weights(g_widths) + D_COPIES * _weights(d_widths) + activations)


def estimated_evaluation_bytes(cfg: DictConfig) -> int:
    """A single run's evaluation: its fixed noise and real sets, and the widest activations of G or D over
    all ``train.eval_samples`` points at once (input and output of a layer)."""
    from ganlab.data.targets import TARGETS

    dim, noise = TARGETS[cfg.data.name].dim, int(cfg.noise.dim or 1)
    widest = max([dim, noise, *cfg.model.g.hidden, *cfg.model.d.hidden])
    return BYTES * cfg.train.eval_samples * (noise + dim + 2 * widest)


# What a refusal may tell a user to lower: the one whose halving saves the most (sizes multiply, so
# the largest part alone can name the wrong factor: a wide layer's share is also batch x width).
SIZE_KEYS = ("model.g.hidden", "model.d.hidden", "noise.dim", "train.batch_size", "train.eval_samples")


def estimated_run_bytes(cfg: DictConfig) -> int:
    """A single run: training plus evaluation."""
    return estimated_training_bytes(cfg) + estimated_evaluation_bytes(cfg)


def key_to_lower(cfg: DictConfig) -> str:
    """The key of ``SIZE_KEYS`` whose value halved (each width of a list) shrinks the estimate most."""
    from omegaconf import OmegaConf

    def halved(key: str) -> int:
        smaller = cfg.copy()
        value = OmegaConf.select(smaller, key)
        half = [max(1, int(w) // 2) for w in value] if OmegaConf.is_list(value) else max(1, int(value or 1) // 2)
        OmegaConf.update(smaller, key, half, force_add=True)
        return estimated_run_bytes(smaller)

    return min(SIZE_KEYS, key=halved)


# A population process without its members: Python, torch, Lightning and the tracker, plus the
# evaluation's working space (members are evaluated in chunks of a fixed size, ganlab.population).
# Measured on the development machine: about 0.9 GB (1.0 GB at K = 64, less the members).
POPULATION_BASE_BYTES = 2**30
EVAL_COPIES = 4  # a member's evaluation samples: on the device, on the host, and two float64 copies


def estimated_population_bytes(cfg: DictConfig, members: int) -> int:
    """Memory ``members`` copies of ``cfg`` trained together need: each member's training state and
    its evaluation samples, plus the process. Checked against runs of the default recipe, ring8 and two
    configs not tuned on (docs/population.md#memory): it overestimates by 1.2-1.5x, so a refusal is not
    a near miss."""
    from ganlab.data.targets import TARGETS

    evaluation = EVAL_COPIES * BYTES * cfg.train.eval_samples * TARGETS[cfg.data.name].dim
    return POPULATION_BASE_BYTES + members * (estimated_training_bytes(cfg) + evaluation)


def available_memory_bytes() -> int | None:
    """Memory the system can give this process now (None where psutil cannot tell)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 -- no estimate: no check
        return None
