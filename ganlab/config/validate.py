"""Value and cross-group checks that types alone cannot express; each failure is one clear line.

Allowed names come from the registries (targets, noise, preprocess, models, losses, optimizers,
schedules); each target's and noise's own value checks live beside its builder in its registry entry.
"""

from __future__ import annotations

import dataclasses
import math
import os

from omegaconf import DictConfig, ListConfig, OmegaConf

from ganlab.config.model_size import (
    available_memory_bytes,
    estimated_population_bytes,
    estimated_run_bytes,
    key_to_lower,
)
from ganlab.config.uris import check_tracking_uri
from ganlab.data.noise import NOISES
from ganlab.data.targets import TARGETS
from ganlab.errors import ConfigError, GanlabError, not_allowed, require, require_positive
from ganlab.nets.mlp import ACTIVATIONS, INITS
from ganlab.nets.models import MODELS, batch_models, packable_models
from ganlab.population.member_settings import MAX_SEEDS, unsupported_reason
from ganlab.preprocess import PER_COORDINATE, PREPROCESSES, samples_per_input
from ganlab.training.losses import LOSSES
from ganlab.training.optimizers import OPTIMIZERS, SCHEDULES

MAX_STEPS = 1000  # d_steps, g_steps: more would make one iteration, which a stop waits for, take minutes
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")  # cuda: gpu by its other name (torch's, and Lightning's)
MAX_EXPERIMENT_NAME = 500


def _choice(value: str, key: str, allowed: tuple[str, ...]) -> None:
    require(value in allowed, key, value, "allowed: " + ", ".join(allowed))


def _validate_data(data: DictConfig) -> None:
    entry = TARGETS[data.name]
    try:  # pictures and dataset files are opened here: a bad one stops the run before anything exists
        entry.check(data)
    except ConfigError:
        raise
    except GanlabError as exc:
        raise ConfigError(str(exc)) from None


def _validate_noise(noise: DictConfig) -> None:
    NOISES[noise.name].check(noise)


def _validate_mlp(net: DictConfig, prefix: str, with_output: bool) -> None:
    for size in net.hidden:
        require(size > 0, f"{prefix}.hidden", list(net.hidden), "every layer size must be > 0")
    require(len(net.activations) == len(net.hidden), f"{prefix}.activations", list(net.activations),
            f"needs one activation per hidden layer ({len(net.hidden)}); a list of one kind, not typed, follows "
            f"{prefix}.hidden by itself")
    for act in net.activations:
        _choice(act, f"{prefix}.activations", tuple(ACTIVATIONS))
    if with_output:
        _choice(net.output_activation, f"{prefix}.output_activation", tuple(ACTIVATIONS))
    else:
        require(net.output_activation == "none", f"{prefix}.output_activation", net.output_activation,
                "D's output is always a sigmoid applied inside the loss; leave it 'none'")
    _choice(net.init, f"{prefix}.init", INITS)
    require_positive(net, prefix, "init_std")
    require(len(net.batch_norm) in (0, len(net.hidden)), f"{prefix}.batch_norm", list(net.batch_norm),
            f"needs one true/false per hidden layer ({len(net.hidden)}), or [] for none")
    require(0 <= net.dropout < 1, f"{prefix}.dropout", net.dropout, "must be in [0, 1); 0 turns dropout off")


def _validate_model(cfg: DictConfig) -> None:
    model, pre = cfg.model, cfg.preprocess
    entry = MODELS[model.name]
    PREPROCESSES[pre.name]  # noqa: B018 -- an unknown name raises the one-line error
    _validate_mlp(model.g, "model.g", with_output=True)
    _validate_mlp(model.d, "model.d", with_output=False)
    require(model.g.fourier_features == 0, "model.g.fourier_features", model.g.fourier_features,
            "only D reads Fourier features (model.d.fourier_features); keep 0 for G")
    require(model.d.fourier_features >= 0, "model.d.fourier_features", model.d.fourier_features,
            "must be >= 0 (0: off)")
    require(model.d.fourier_scale > 0, "model.d.fourier_scale", model.d.fourier_scale, "must be > 0")
    transforms = [name for name in PREPROCESSES.names if name != "none"]
    batch_transforms = ", ".join(transforms[:-1]) + f" or {transforms[-1]}"
    if entry.judges_batches:
        require(pre.name != "none", "preprocess", pre.name,
                f"model={model.name} judges whole batches: use {batch_transforms}")
    elif pre.name == "pack":
        require(entry.packable, "preprocess", pre.name,
                f"model={model.name} cannot read packed inputs; pack works with {', '.join(packable_models())}")
    else:
        require(pre.name == "none", "preprocess", pre.name,
                f"model={model.name} judges single samples: use preprocess=none or pack "
                f"(batch transforms need model={' or '.join(batch_models())})")
    dim = TARGETS[cfg.data.name].dim
    if dim > 1:
        require(pre.name not in PER_COORDINATE, "preprocess", pre.name,
                f"{pre.name} summarises each coordinate apart, which loses the joint law of {dim}D data: "
                "use none or pack")
    if entry.conditional:
        conditional = tuple(name for name, target in TARGETS.items() if target.conditional)
        require(TARGETS[cfg.data.name].conditional, "model", model.name,
                f"a conditional model needs labelled data: {', '.join(conditional)}")
    if entry.minibatch:
        require_positive(model, "model", "kernels", "kernel_dim", "minibatch_init_std")
    if model.standardize:
        known = tuple(name for name, target in TARGETS.items() if target.standard_units)
        require(TARGETS[cfg.data.name].standard_units, "model.standardize", True,
                f"needs a target whose mean and std are known ({', '.join(known)}); data={cfg.data.name} "
                "is not one: set model.standardize=false")
        require(model.g.output_activation == "none", "model.g.output_activation", model.g.output_activation,
                "model.standardize=true scales G's output by the target's std, so a bounded output would cap "
                "G within one std of the mean: use none, or set model.standardize=false")


def _validate_optim(optim: DictConfig) -> None:
    OPTIMIZERS[optim.name]  # noqa: B018 -- an unknown name raises the one-line error
    require_positive(optim, "optim", "d_lr", "g_lr")
    SCHEDULES[optim.schedule]  # noqa: B018
    require(0 < optim.final_lr_fraction <= 1, "optim.final_lr_fraction", optim.final_lr_fraction,
            "must be in (0, 1]")
    require(optim.short_run_reference >= 0, "optim.short_run_reference", optim.short_run_reference,
            "must be >= 0 (0: off)")
    if "momentum" in optim:
        require(0 <= optim.momentum < 1, "optim.momentum", optim.momentum, "must be in [0, 1)")
    for key in ("beta1", "beta2"):
        if key in optim:
            require(0 <= optim[key] < 1, f"optim.{key}", optim[key], "must be in [0, 1)")


def _validate_train(cfg: DictConfig) -> None:
    train = cfg.train
    require_positive(train, "train", "iterations", "d_steps", "g_steps", "batch_size", "eval_every",
                     "plot_every", "eval_samples", "threads")
    for key in ("d_steps", "g_steps"):  # an iteration is where a stop signal is honoured (and checkpointed)
        require(train[key] <= MAX_STEPS, f"train.{key}", train[key],
                f"must be <= {MAX_STEPS} (updates per iteration; S1's largest is 40)")
    LOSSES[train.loss]  # noqa: B018 -- an unknown name raises the one-line error
    _choice(train.accelerator, "train.accelerator", ACCELERATORS)
    require(0 <= train.label_smoothing < 0.5, "train.label_smoothing", train.label_smoothing,
            "must be in [0, 0.5): real targets become 1 - label_smoothing")
    require(0 <= train.ema_decay < 1, "train.ema_decay", train.ema_decay, "must be in [0, 1); 0 turns EMA off")
    require(train.r1_gamma >= 0, "train.r1_gamma", train.r1_gamma, "must be >= 0; 0 turns R1 off")
    require(train.ckpt_every >= 0, "train.ckpt_every", train.ckpt_every, "must be >= 0; 0 turns checkpoints off")
    require(train.ckpt_keep >= 1, "train.ckpt_keep", train.ckpt_keep, "must be >= 1 (checkpoints kept per run)")
    require(1 <= train.seeds <= MAX_SEEDS, "train.seeds", train.seeds, f"must be in [1, {MAX_SEEDS}]")
    require(0 <= train.seed and train.seed + train.seeds <= 2**32, "train.seed", train.seed,
            "must be in [0, 2**32 - train.seeds] (numpy and torch take 32-bit seeds)")
    cores = os.cpu_count() or 1
    require(train.threads <= 4 * cores, "train.threads", train.threads,
            f"must be in [1, {4 * cores}] (this machine has {cores} cores; more threads only slow it down)")
    if train.seeds > 1:
        reason = unsupported_reason(cfg)
        require(reason is None, "train.seeds", train.seeds,
                f"needs population training, and {reason}; train one run per train.seed= instead "
                "(python -m ganlab.train train.seeds=N does that itself)")
    group = samples_per_input(cfg.preprocess)
    key = "preprocess.m" if cfg.preprocess.name == "pack" else "preprocess.group_size"
    require(group is not None, key, group, "must be a number of samples per D input (0: the whole batch); "
            "null is preprocess=auto's own")
    if cfg.preprocess.name == "pack":
        require(group >= 1, key, group, "must be >= 1 (samples per D input)")
    require(group >= 0, key, group, "must be >= 0; 0 means the whole batch")
    model = MODELS[cfg.model.name]
    needs_pairs = cfg.preprocess.name in ("moments", "diffs", "variances") or model.minibatch
    if needs_pairs:
        require(train.batch_size >= 2 and group != 1, "train.batch_size", train.batch_size,
                "batch statistics need at least 2 samples per batch (and per group)")
    if group:
        require(model.judges_batches or cfg.preprocess.name == "pack", key, group,
                f"only batch discriminators (model={' or '.join(batch_models())}) group samples")
        require(train.batch_size % group == 0, key, group, f"must divide train.batch_size={train.batch_size}")
    if model.judges_batches or model.minibatch or cfg.preprocess.name == "pack":  # D judges whole batches
        require(train.eval_samples >= train.batch_size, "train.eval_samples", train.eval_samples,
                f"must be >= train.batch_size={train.batch_size} for a discriminator that judges whole batches")


def _no_unknown_keys(cfg: DictConfig) -> None:
    """`+group.key=value` bypasses Hydra's struct check: compare every node with its schema."""
    def walk(node: DictConfig, prefix: str) -> None:
        schema = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(schema):
            known = {f.name for f in dataclasses.fields(schema)}
            for key in node.keys():
                require(key in known, f"{prefix}{key}", node[key],
                        f"unknown key; {prefix.rstrip('.') or 'the config'} has: {', '.join(sorted(known))}")
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                walk(child, f"{prefix}{key}.")

    walk(cfg, "")


def _no_non_finite(cfg: DictConfig) -> None:
    """NaN and infinities are refused in every float field (and list of floats), by name, before any
    check that would word them less clearly (or any training that would fail on them later)."""
    def walk(node, prefix: str) -> None:
        items = node.items() if isinstance(node, DictConfig) else enumerate(node)
        for key, value in items:
            name = f"{prefix}.{key}" if isinstance(node, DictConfig) else prefix
            if isinstance(value, DictConfig | ListConfig):
                walk(value, name if isinstance(value, ListConfig) else name)
            elif isinstance(value, float) and not math.isfinite(value):
                shown = list(node) if isinstance(node, ListConfig) else value
                require(False, name.lstrip("."), shown, "must be a finite number (no nan or inf)")

    walk(cfg, "")


def _validate_tracking(tracking: DictConfig) -> None:
    if tracking.uri is not None:
        check_tracking_uri(tracking.uri)
    name = tracking.experiment
    require(name is None or (isinstance(name, str) and name.strip() != "" and len(name) <= MAX_EXPERIMENT_NAME),
            "tracking.experiment", name, f"must be an MLflow experiment name of 1-{MAX_EXPERIMENT_NAME} characters")
    _validate_register(tracking.register)


MEMORY_SHARE = 0.8  # of the memory free now, what a run may plan to use


def check_population_fits(cfg: DictConfig, members: int, key: str) -> None:
    """``members`` copies of ``cfg`` trained together (``train.seeds``, ``--population``) must fit in
    this machine's free memory: refused up front, naming ``key`` and how many fit, rather than killed
    by the system minutes in."""
    free = available_memory_bytes()
    need = estimated_population_bytes(cfg, members)
    if not free or need <= MEMORY_SHARE * free:
        return
    base = estimated_population_bytes(cfg, 0)
    fit = max(int((MEMORY_SHARE * free - base) // ((need - base) / members)), 0)
    raise not_allowed(key, members, f"{members} members would need about {need / 2**30:.1f} GB and this machine "
                      f"has {free / 2**30:.1f} GB free; at most {fit} fit (or lower train.eval_samples or the "
                      "batch size)")


def _validate_size(cfg: DictConfig) -> None:
    """Networks whose weights and optimiser state cannot fit in this machine's free memory are refused
    by name, instead of failing deep inside torch (or being killed by the system) once allocated."""
    if cfg.train.seeds > 1:
        check_population_fits(cfg, cfg.train.seeds, "train.seeds")
        return
    need = estimated_run_bytes(cfg)
    free = available_memory_bytes()
    if free and need > MEMORY_SHARE * free:
        key = key_to_lower(cfg)
        value = OmegaConf.select(cfg, key)
        require(False, key, list(value) if OmegaConf.is_list(value) else value,
                f"the run would need about {need / 2**30:.1f} GB (networks, optimizer state, a batch's activations "
                f"and the evaluation's samples) and this machine has {free / 2**30:.1f} GB free; lowering {key} "
                "saves the most")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value found."""
    _no_unknown_keys(cfg)
    _no_non_finite(cfg)
    _validate_data(cfg.data)
    _validate_noise(cfg.noise)
    _validate_model(cfg)
    _validate_optim(cfg.optim)
    _validate_train(cfg)
    _validate_tracking(cfg.tracking)
    _validate_size(cfg)


def _validate_register(name: str | None) -> None:
    """The Model Registry's own rules for a name, checked before training rather than after it."""
    if name is None:
        return
    require(isinstance(name, str) and name.strip() != "" and not set(name) & {"/", ":"} and len(name) <= 256,
            "tracking.register", name, "must be a model name of 1-256 characters without '/' or ':' (or null)")

