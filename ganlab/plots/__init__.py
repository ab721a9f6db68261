"""Figures and animations logged to MLflow. Headless: ``ganlab.runtime.configure_runtime`` selects
matplotlib's Agg backend before the first figure; importing this package changes nothing."""
