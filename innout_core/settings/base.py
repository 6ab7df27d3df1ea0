"""The base of every stage's typed settings: unknown keys are refused, and ``preset(name)`` reads the stage's row of
the one preset table (:data:`innout_core.settings.presets.PRESETS`)."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


from innout_core.settings.presets import stage_values

__all__ = ["StageSettings"]


class StageSettings(BaseModel):
    """Typed settings of one stage section (``section``: its key in a pipeline config and in the preset table)."""

    model_config = ConfigDict(extra="forbid")
    section: ClassVar[str] = ""

    @classmethod
    def preset(cls, name: str, **values: Any) -> Self:
        """The stage's settings of preset ``name`` (its row of the preset table over the field defaults), with
        ``values`` on top; an unknown preset is bad input naming the choices."""
        return cls.model_validate({**stage_values(cls.section, name), **values})
