"""The original generator theta_o itself, unchanged: the no-op row (as ``baselines/original.py``)."""

from __future__ import annotations

from baselines.original import Original as ClassifierOriginal
from benchmark.generative.methods import GEN_METHODS


@GEN_METHODS.register()
class Original(ClassifierOriginal):
    """A no-op: one-shot, and the shot does nothing."""
