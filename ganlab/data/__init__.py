"""Targets (what G must learn) and noise (what G is fed)."""
