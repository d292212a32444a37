"""The front end: models, pruning, capture, counting and mapping onto a design."""

import os

# Before torch loads its OpenMP runtime: threads that wait sleep instead of spinning
# (`mappings.threads`); the user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
