"""A frozen teacher inside a LightningModule: always in eval mode, never in checkpoints."""

from __future__ import annotations

from typing import Any

TEACHER_PREFIX = "teacher."


class FrozenTeacherMixin:
    """For LightningModules holding a frozen ``self.teacher`` (``requires_grad=False``) as a submodule, or None
    when a phase needs no teacher.

    Registered as a submodule, the teacher follows the module to its device and into DDP/FSDP like the student.
    The mixin keeps it in eval mode (no dropout) when Lightning switches the module to training, and leaves its
    weights out of checkpoints: they come from the teacher's own files, and resuming puts them back.
    List it before ``L.LightningModule``: ``class M(FrozenTeacherMixin, L.LightningModule)``.
    """

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
