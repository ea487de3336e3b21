"""Registered networks. Every classifier ends in an ``nn.Linear`` named ``fc`` (the output
layer), which methods that edit the head (boundary expanding) rely on; the generators of
``benchmark.models.unet`` (``model_task(name) == "generate"``) predict noise instead."""

from benchmark.models.nets import MODELS, build_model, trainable_state
from benchmark.models.unet import model_task

__all__ = ["MODELS", "build_model", "model_task", "trainable_state"]
