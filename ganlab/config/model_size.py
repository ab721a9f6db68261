"""How much memory a config's networks need, estimated from the config alone (nothing is built), so
that a network too large for the machine is a one-line error before anything trains."""

from __future__ import annotations

from omegaconf import DictConfig

BYTES = 4  # float32
G_COPIES = 5  # weights, gradients, Adam's two moments (SGD keeps one buffer: a copy too many), the EMA copy
D_COPIES = 4  # weights, gradients, Adam's two moments


def _weights(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))


def training_memory_parts(cfg: DictConfig) -> dict[str, int]:
    """:func:`estimated_training_bytes` by the key that sets each part (G's first layer by ``noise.dim``,
    the rest of G by ``model.g.hidden``, D by ``model.d.hidden``, activations by ``train.batch_size``), so
    that a refusal names the key to lower."""
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
    first_layer = g_widths[0] * g_widths[1]
    return {"noise.dim": BYTES * G_COPIES * first_layer,
            "model.g.hidden": BYTES * G_COPIES * (_weights(g_widths) - first_layer),
            "model.d.hidden": BYTES * D_COPIES * _weights(d_widths),
            "train.batch_size": BYTES * activations}


def estimated_training_bytes(cfg: DictConfig) -> int:
    """Weights, gradients and optimiser state of G and D, plus one batch of activations; a lower bound
    good to an order of magnitude (the first layers' widths depend on the model and preprocessing)."""
    return sum(training_memory_parts(cfg).values())


def evaluation_memory_parts(cfg: DictConfig) -> dict[str, int]:
    """A single run's evaluation: its fixed noise and real sets, and the widest activations of G or D over
    all ``train.eval_samples`` points at once (input and output of a layer); the noise's share (and the
    widest layer's, when that is the noise) is set by ``noise.dim``, the rest by ``train.eval_samples``."""
    from ganlab.data.targets import TARGETS

    dim, noise = TARGETS[cfg.data.name].dim, int(cfg.noise.dim or 1)
    widest = max([dim, noise, *cfg.model.g.hidden, *cfg.model.d.hidden])
    by_noise = noise + (2 * widest if widest == noise else 0)
    return {"noise.dim": BYTES * cfg.train.eval_samples * by_noise,
            "train.eval_samples": BYTES * cfg.train.eval_samples * (noise + dim + 2 * widest - by_noise)}


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
