"""User-facing errors: train.py prints these as one clear message instead of a traceback."""

from __future__ import annotations


class TinyDistillError(Exception):
    """Base class for errors caused by the user's input (data, config, paths), not by a bug."""


class DataError(TinyDistillError, ValueError):
    """A data file is missing, malformed, or lacks an expected column."""


class ConfigError(TinyDistillError, ValueError):
    """A config value is invalid or inconsistent with the models or data."""


class StageInterrupted(Exception):
    """A stage stopped by SIGTERM (`kill`, a scheduler's time limit) before it finished: its result is not written."""

    exit_code = 143  # 128 + SIGTERM: what a shell reports for a process SIGTERM ended


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its class name if it has none), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
