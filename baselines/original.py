"""The original model theta_o, unchanged: the reference row every method must beat.

No objective and no hyperparameters. Its UA is 100 minus its forget accuracy, and
its relearning delay is 0 by definition.
"""

from __future__ import annotations

from torch import nn

from benchmark.module import METHODS, UnlearnData, UnlearnModule


@METHODS.register()
class Original(UnlearnModule):
    """A no-op: one-shot, and the shot does nothing."""

    one_shot = True

    def __init__(self, net: nn.Module, data: UnlearnData) -> None:
        super().__init__(net, data)

    def unlearn_once(self) -> dict[str, float]:
        return {}
