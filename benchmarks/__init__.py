"""`make bench`: speed and quality measurements (not tests: they take minutes)."""
