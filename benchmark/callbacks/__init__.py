"""Lightning callbacks: the relearning attack."""

from benchmark.callbacks.relearn import (
    ATTACKERS,
    Curve,
    Levels,
    RelearnAttack,
    RelearnTarget,
    rcd_metrics,
)

__all__ = ["ATTACKERS", "Curve", "Levels", "RelearnAttack", "RelearnTarget", "rcd_metrics"]
