"""Value and cross-group checks that types alone cannot express; each failure is one clear line."""

from __future__ import annotations

import dataclasses
import math
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from ganlab.data.image_files import DatasetFileError
from ganlab.data.noise import NOISE_NAMES
from ganlab.data.registry import CONDITIONAL_TARGETS, TARGET_DIMS, TARGET_NAMES, ImageDensityError, build_target
from ganlab.data.targets_images import IMAGE_DATASETS
from ganlab.discriminator_inputs import PREPROCESS_NAMES, samples_per_input
from ganlab.nets.mlp import ACTIVATIONS, INITS
from ganlab.nets.models import BATCH_MODELS, MODEL_NAMES, PACKABLE_MODELS

LOSSES = ("bce", "bce_saturating", "clamped_log")
SCHEDULES = ("none", "cosine", "linear", "exponential")
ACCELERATORS = ("cpu", "gpu", "auto")
OPTIMIZERS = ("adam", "sgd")
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def _fail(key: str, value: Any, allowed: str) -> None:
    from ganlab.config.compose import ConfigError

    raise ConfigError(f"{key}={value!r} is not allowed; {allowed}")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        _fail(key, value, allowed)


def _positive(cfg: DictConfig, prefix: str, *keys: str) -> None:
    for key in keys:
        value = cfg[key]
        _check(math.isfinite(value) and value > 0, f"{prefix}.{key}", value, "must be > 0")


def _choice(value: str, key: str, allowed: tuple[str, ...]) -> None:
    _check(value in allowed, key, value, "allowed: " + ", ".join(allowed))


def check_tracking_uri(uri: str, key: str = "tracking.uri") -> None:
    """MLflow 3 needs a database or server URI; a plain folder path is refused here, not mid-run."""
    scheme = urlparse(uri).scheme.split("+")[0]
    _check(scheme in TRACKING_SCHEMES, key, uri,
           "use a database or server URI such as sqlite:///mlruns/mlflow.db or http://127.0.0.1:5000")
    if scheme == "sqlite":
        _check(uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"), key, uri,
               "a SQLite URI looks like sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if scheme in ("http", "https"):
        _check(bool(urlparse(uri).netloc), key, uri, "an http URI needs a host, e.g. http://127.0.0.1:5000")


def _validate_picture(data: DictConfig) -> None:
    box = list(data.box)
    _check(len(box) == 4 and box[0] < box[1] and box[2] < box[3], "data.box", box,
           "must be [xmin, xmax, ymin, ymax] with xmin < xmax and ymin < ymax")
    _check(0 <= data.jitter <= 1, "data.jitter", data.jitter, "must be in [0, 1] (a share of one pixel)")
    _check(data.max_side >= 0, "data.max_side", data.max_side, "must be >= 0; 0 keeps the picture's size")
    if data.name == "conditional_image_density":
        _check(len(data.paths) >= 2, "data.paths", list(data.paths), "a conditional target needs >= 2 pictures")
    try:  # open the pictures now: a bad path should stop the run before anything is created
        build_target(data)
    except ImageDensityError as exc:
        from ganlab.config.compose import ConfigError

        raise ConfigError(str(exc)) from None


def _validate_image_dataset(data: DictConfig) -> None:
    _check(0 < data.holdout < 1, "data.holdout", data.holdout, "must be in (0, 1): the share of images held out")
    if data.name != "digits":
        _check(bool(data.root), "data.root", data.root,
               f"{data.name} is read from local files: set data.root to their folder (nothing is downloaded)")
    try:  # read the files now: a missing or broken dataset should stop the run before anything is created
        build_target(data)
    except DatasetFileError as exc:
        from ganlab.config.compose import ConfigError

        raise ConfigError(str(exc)) from None


def _validate_data(data: DictConfig) -> None:
    _choice(data.name, "data.name", TARGET_NAMES)
    if data.name == "ring8":
        _check(data.count >= 1, "data.count", data.count, "must be >= 1")
        _positive(data, "data", "radius", "std")
        return
    if data.name == "grid25":
        _check(data.side >= 1, "data.side", data.side, "must be >= 1")
        _positive(data, "data", "spacing", "std")
        return
    if data.name in ("image_density", "conditional_image_density"):
        _validate_picture(data)
        return
    if data.name in IMAGE_DATASETS:
        _validate_image_dataset(data)
        return
    if data.name == "gaussian_1d":
        _check(math.isfinite(data.mean), "data.mean", data.mean, "must be a finite number")
        _positive(data, "data", "std")
        return
    n = len(data.weights)
    _check(n > 0, "data.weights", list(data.weights), "a mixture needs at least one component")
    for key in ("means", "stds"):
        _check(len(data[key]) == n, f"data.{key}", list(data[key]), f"needs {n} entries, one per weight")
    _check(all(w >= 0 for w in data.weights) and abs(sum(data.weights) - 1) < 1e-6, "data.weights",
           list(data.weights), "weights must be >= 0 and sum to 1")
    _check(all(s > 0 for s in data.stds), "data.stds", list(data.stds), "every std must be > 0")


def _validate_noise(noise: DictConfig) -> None:
    _choice(noise.name, "noise.name", NOISE_NAMES)
    _positive(noise, "noise", "dim")
    if noise.name in ("uniform", "stratified"):
        _check(noise.low < noise.high, "noise.high", noise.high, f"must be > noise.low={noise.low}")
    if noise.name == "normal":
        _positive(noise, "noise", "std")
    if noise.name == "stratified":
        _check(noise.jitter >= 0, "noise.jitter", noise.jitter, "must be >= 0")


def _validate_mlp(net: DictConfig, prefix: str, with_output: bool) -> None:
    for size in net.hidden:
        _check(size > 0, f"{prefix}.hidden", list(net.hidden), "every layer size must be > 0")
    _check(len(net.activations) == len(net.hidden), f"{prefix}.activations", list(net.activations),
           f"needs one activation per hidden layer ({len(net.hidden)})")
    for act in net.activations:
        _choice(act, f"{prefix}.activations", tuple(ACTIVATIONS))
    if with_output:
        _choice(net.output_activation, f"{prefix}.output_activation", tuple(ACTIVATIONS))
    else:
        _check(net.output_activation == "none", f"{prefix}.output_activation", net.output_activation,
               "D's output is always a sigmoid applied inside the loss; leave it 'none'")
    _choice(net.init, f"{prefix}.init", INITS)
    _positive(net, prefix, "init_std")
    _check(len(net.batch_norm) in (0, len(net.hidden)), f"{prefix}.batch_norm", list(net.batch_norm),
           f"needs one true/false per hidden layer ({len(net.hidden)}), or [] for none")
    _check(0 <= net.dropout < 1, f"{prefix}.dropout", net.dropout, "must be in [0, 1); 0 turns dropout off")


def _validate_model(cfg: DictConfig) -> None:
    model, pre = cfg.model, cfg.preprocess
    _choice(model.name, "model.name", MODEL_NAMES)
    _choice(pre.name, "preprocess.name", PREPROCESS_NAMES)
    _validate_mlp(model.g, "model.g", with_output=True)
    _validate_mlp(model.d, "model.d", with_output=False)
    if model.name in BATCH_MODELS:
        _check(pre.name != "none", "preprocess", pre.name,
               f"model={model.name} judges whole batches: use raw, diffs, variances, moments, sorted or pack")
    elif pre.name == "pack":
        _check(model.name in PACKABLE_MODELS, "preprocess", pre.name,
               f"model={model.name} cannot read packed inputs; pack works with {', '.join(PACKABLE_MODELS)}")
    else:
        _check(pre.name == "none", "preprocess", pre.name,
               f"model={model.name} judges single samples: use preprocess=none or pack "
               "(batch transforms need model=devnag or quantile)")
    dim = TARGET_DIMS[cfg.data.name]
    if dim > 1:
        _check(pre.name in ("none", "pack", "raw"), "preprocess", pre.name,
               f"{pre.name} summarises each coordinate apart, which loses the joint law of {dim}D data: "
               "use none or pack")
    conditional_data = cfg.data.name in CONDITIONAL_TARGETS
    if model.name == "conditional":
        _check(conditional_data, "model", model.name,
               f"a conditional model needs labelled data: {', '.join(CONDITIONAL_TARGETS)}")
    if model.name == "minibatch":
        _positive(model, "model", "kernels", "kernel_dim", "minibatch_init_std")


def _validate_optim(optim: DictConfig) -> None:
    _choice(optim.name, "optim.name", OPTIMIZERS)
    _positive(optim, "optim", "d_lr", "g_lr")
    _choice(optim.schedule, "optim.schedule", SCHEDULES)
    _check(0 < optim.final_lr_fraction <= 1, "optim.final_lr_fraction", optim.final_lr_fraction,
           "must be in (0, 1]")
    if optim.name == "sgd":
        _check(0 <= optim.momentum < 1, "optim.momentum", optim.momentum, "must be in [0, 1)")
    else:
        for key in ("beta1", "beta2"):
            _check(0 <= optim[key] < 1, f"optim.{key}", optim[key], "must be in [0, 1)")


def _validate_train(cfg: DictConfig) -> None:
    train = cfg.train
    _positive(train, "train", "iterations", "d_steps", "g_steps", "batch_size", "eval_every",
              "plot_every", "eval_samples", "threads")
    _choice(train.loss, "train.loss", LOSSES)
    _choice(train.accelerator, "train.accelerator", ACCELERATORS)
    _check(0 <= train.label_smoothing < 0.5, "train.label_smoothing", train.label_smoothing,
           "must be in [0, 0.5): real targets become 1 - label_smoothing")
    _check(0 <= train.ema_decay < 1, "train.ema_decay", train.ema_decay, "must be in [0, 1); 0 turns EMA off")
    _check(train.r1_gamma >= 0, "train.r1_gamma", train.r1_gamma, "must be >= 0; 0 turns R1 off")
    _check(train.ckpt_every >= 0, "train.ckpt_every", train.ckpt_every, "must be >= 0; 0 turns checkpoints off")
    _check(train.ckpt_keep >= 1, "train.ckpt_keep", train.ckpt_keep, "must be >= 1 (checkpoints kept per run)")
    group = samples_per_input(cfg.preprocess)
    key = "preprocess.m" if cfg.preprocess.name == "pack" else "preprocess.group_size"
    if cfg.preprocess.name == "pack":
        _check(group >= 1, key, group, "must be >= 1 (samples per D input)")
    _check(group >= 0, key, group, "must be >= 0; 0 means the whole batch")
    needs_pairs = cfg.preprocess.name in ("moments", "diffs", "variances") or cfg.model.name == "minibatch"
    if needs_pairs:
        _check(train.batch_size >= 2 and group != 1, "train.batch_size", train.batch_size,
               "batch statistics need at least 2 samples per batch (and per group)")
    if group:
        _check(cfg.model.name in BATCH_MODELS or cfg.preprocess.name == "pack", key, group,
               "only batch discriminators (model=devnag or quantile) group samples")
        _check(train.batch_size % group == 0, key, group, f"must divide train.batch_size={train.batch_size}")
    if cfg.model.name in BATCH_MODELS or cfg.preprocess.name == "pack":
        _check(train.eval_samples >= train.batch_size, "train.eval_samples", train.eval_samples,
               f"must be >= train.batch_size={train.batch_size} for a batch discriminator")


def _no_unknown_keys(cfg: DictConfig) -> None:
    """`+group.key=value` bypasses Hydra's struct check: compare every node with its schema."""
    def walk(node: DictConfig, prefix: str) -> None:
        schema = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(schema):
            known = {f.name for f in dataclasses.fields(schema)}
            for key in node.keys():
                _check(key in known, f"{prefix}{key}", node[key],
                       f"unknown key; {prefix.rstrip('.') or 'the config'} has: {', '.join(sorted(known))}")
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                walk(child, f"{prefix}{key}.")

    walk(cfg, "")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value found."""
    _no_unknown_keys(cfg)
    _validate_data(cfg.data)
    _validate_noise(cfg.noise)
    _validate_model(cfg)
    _validate_optim(cfg.optim)
    _validate_train(cfg)
    if cfg.tracking.uri is not None:
        check_tracking_uri(cfg.tracking.uri)
