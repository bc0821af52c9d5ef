"""A frozen teacher inside a LightningModule: no gradients, in the mode `distill.teacher_mode` picks, never in
checkpoints."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tinydistill.errors import ConfigError
from tinydistill.hardware import warn_if_emulated_bf16
from tinydistill.models.capture import AttentionKind, Captured, forward_with_capture

TEACHER_PREFIX = "teacher."
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# eval: no dropout, the same targets for the same batch (the default). train: dropout on, as the reference code,
# which never calls eval() on its teacher, so its targets carry dropout noise.
TEACHER_MODES = ("eval", "train")


def teacher_dtype(name: str) -> torch.dtype:
    """`distill.teacher_dtype` as a torch dtype (a warning for bfloat16 on a CPU that would emulate it)."""
    if name not in DTYPES:
        raise ConfigError(f"distill.teacher_dtype={name!r} must be one of {', '.join(DTYPES)}")
    if DTYPES[name] == torch.bfloat16:
        warn_if_emulated_bf16(f"distill.teacher_dtype={name}")
    return DTYPES[name]


def check_teacher_mode(mode: str) -> str:
    """`distill.teacher_mode`, checked."""
    if mode not in TEACHER_MODES:
        raise ConfigError(f"distill.teacher_mode={mode!r} must be one of {', '.join(TEACHER_MODES)}")
    return mode


class FrozenTeacherMixin:
    """For LightningModules holding a frozen ``self.teacher`` (``requires_grad=False``) as a submodule, or None
    when a phase needs no teacher.

    Registered as a submodule, the teacher follows the module to its device and into DDP/FSDP like the student.
    ``self.teacher_mode`` (``eval`` unless the module sets it, see :meth:`set_teacher`): in ``eval`` the mixin keeps
    the teacher in eval mode (no dropout) when the module is switched to training; in ``train`` the teacher follows
    the module's mode, so it runs with dropout while the student trains. Lightning (2.2 and later) does not call
    ``train()`` at fit start and restores each submodule's captured mode after validation, so the mode set here
    holds for every training step. The teacher's weights stay out of checkpoints: they come from the teacher's own
    files, and resuming puts them back.
    List it before ``L.LightningModule``: ``class M(FrozenTeacherMixin, L.LightningModule)``.
    """

    teacher_mode: str = "eval"

    def set_teacher(self, teacher: torch.nn.Module | None, mode: str = "eval") -> None:
        """Register `teacher` (or None) frozen, in `mode` (``eval`` or ``train``); call after the module's
        ``__init__`` has created the ``nn.Module`` state."""
        self.teacher_mode = check_teacher_mode(mode)
        if teacher is not None:
            teacher = teacher.requires_grad_(False).train(mode == "train")
        self.teacher = teacher

    def teacher_captures(self, batch: dict[str, Tensor], want_attention: AttentionKind | None) -> Captured:
        """The teacher's hidden states and attention for `batch`, without gradients, in float32 whatever dtype
        the teacher runs in (`distill.teacher_dtype`)."""
        with torch.no_grad():
            return forward_with_capture(self.teacher, batch, want_attention).float()

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        if self.teacher is not None:
            # eval mode: never dropout in the teacher; train mode: dropout exactly while the student trains
            self.teacher.train(mode and self.teacher_mode == "train")
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
