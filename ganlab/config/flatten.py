"""A resolved config as one flat ``{dotted key: value}`` dict: MLflow params, resume checks and sweeps
all compare or record configs this way."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def flatten_config(cfg: DictConfig) -> dict[str, Any]:
    """E.g. ``{'optim.d_lr': 0.001, 'model.g.hidden': [5, 5]}`` (lists stay values, dicts are walked)."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat
