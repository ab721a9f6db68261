"""Which recipe specialised a run, in words, for the run's first line and its MLflow tag.

The recipe itself is pure config (``conf/recipe/``, merged by Hydra's defaults list; see
``conf/config.yaml``): each file it merges records itself in ``applied_recipe``, read back here.
"""

from __future__ import annotations

from omegaconf import DictConfig


def recipe_summary(cfg: DictConfig) -> str:
    """E.g. 'auto: family/points_2d + model/minibatch_auto', 'auto: nothing specialised', 'none'."""
    applied = dict(cfg.get("applied_recipe") or {})
    choice = applied.pop("recipe", "none")
    if choice != "auto":
        return str(choice)
    parts = [applied[slot] for slot in ("data", "model", "pair", "optim", "model_optim") if slot in applied]
    return "auto: " + (" + ".join(parts) if parts else "nothing specialised")
