"""Optuna sweeps: definitions (``sweeps/*.yaml``), the study, trials and the MLflow summary."""
