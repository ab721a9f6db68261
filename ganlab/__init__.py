"""ganlab: run, compare, sweep and track the classic small GAN experiments."""

__version__ = "0.1.0"
