"""Configuration: typed schema, Hydra composition and validation."""

from ganlab.config.compose import compose_config

__all__ = ["compose_config"]
