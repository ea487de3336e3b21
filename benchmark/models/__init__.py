"""Registered networks. Every model ends in an ``nn.Linear`` named ``fc`` (the output layer),
which methods that edit the head (boundary expanding) rely on."""

from benchmark.models.nets import MODELS, build_model, trainable_state

__all__ = ["MODELS", "build_model", "trainable_state"]
