"""Figures and animations logged to MLflow (headless: the Agg backend)."""

import matplotlib

matplotlib.use("Agg")
