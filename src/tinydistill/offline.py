"""Whether this run may reach the Hugging Face hub: the environment variables that keep `datasets` and the hub
offline (the Makefile sets them; tests and the demo never download)."""

from __future__ import annotations

import os

#: Environment variables that keep `datasets` and the hub offline; values huggingface_hub reads as true.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
TRUE_VALUES = ("1", "on", "yes", "true")


def offline_variable() -> str | None:
    """The environment variable that makes this run offline, if any."""
    return next((v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in TRUE_VALUES), None)
