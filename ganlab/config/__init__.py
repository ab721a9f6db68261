"""Configuration: typed schema, Hydra composition and validation."""

from ganlab.config.compose import ConfigError, compose_config

__all__ = ["ConfigError", "compose_config"]
