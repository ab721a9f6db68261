"""Population training: many GANs of one architecture trained together in one process.

The networks are tiny, so a single run is bound by per-operation overhead; stacking K members' weights
turns K small matrix products into one batched one. See docs/population.md.
"""
