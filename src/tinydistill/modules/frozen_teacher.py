"""A frozen teacher inside a LightningModule: always in eval mode, never in checkpoints."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tinydistill.errors import ConfigError
from tinydistill.models.capture import AttentionKind, Captured, forward_with_capture

TEACHER_PREFIX = "teacher."
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def teacher_dtype(name: str) -> torch.dtype:
    """`distill.teacher_dtype` as a torch dtype."""
    if name not in DTYPES:
        raise ConfigError(f"distill.teacher_dtype={name!r} must be one of {', '.join(DTYPES)}")
    return DTYPES[name]


class FrozenTeacherMixin:
    """For LightningModules holding a frozen ``self.teacher`` (``requires_grad=False``) as a submodule, or None
    when a phase needs no teacher.

    Registered as a submodule, the teacher follows the module to its device and into DDP/FSDP like the student.
    The mixin keeps it in eval mode (no dropout) when Lightning switches the module to training, and leaves its
    weights out of checkpoints: they come from the teacher's own files, and resuming puts them back.
    List it before ``L.LightningModule``: ``class M(FrozenTeacherMixin, L.LightningModule)``.
    """

    def teacher_captures(self, batch: dict[str, Tensor], want_attention: AttentionKind | None) -> Captured:
        """The teacher's hidden states and attention for `batch`, without gradients, in float32 whatever dtype
        the teacher runs in (`distill.teacher_dtype`)."""
        with torch.no_grad():
            return forward_with_capture(self.teacher, batch, want_attention).float()

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        if self.teacher is not None:
            self.teacher.eval()  # never dropout in the teacher
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(TEACHER_PREFIX)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints hold no teacher weights: keep the ones loaded from the teacher's files.
        if self.teacher is None:
            return
        state = checkpoint["state_dict"]
        for key, value in self.teacher.state_dict(prefix=TEACHER_PREFIX).items():
            state.setdefault(key, value)
