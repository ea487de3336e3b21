"""Shared loss terms, each a small pure function (methods combine them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; logits [B, C], y [B]."""
    return F.cross_entropy(logits, y)


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) at temperature T with ``reduction="batchmean"``, scaled by T^2
    (Hinton et al.); ``"mean"`` would divide by the class count too, a known reference bug."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def l1_norm(net: nn.Module) -> torch.Tensor:
    """Sum of absolute values of all trainable parameters."""
    return sum(p.abs().sum() for p in net.parameters() if p.requires_grad)


def random_other_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly drawn label different from ``y`` for each example."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + shift) % num_classes
