"""Lightning callbacks: the relearning attack."""

from benchmark.callbacks.relearn import (
    ATTACKERS,
    Curve,
    Levels,
    RelearnAttack,
    RelearnTarget,
    convergence_step,
    relearning_levels,
)

__all__ = ["ATTACKERS", "Curve", "Levels", "RelearnAttack", "RelearnTarget", "convergence_step", "relearning_levels"]
