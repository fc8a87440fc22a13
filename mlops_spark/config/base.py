"""Base class of settings sections; step packages define their own sections on it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every nested settings section: unknown keys are errors, every field documented."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)
