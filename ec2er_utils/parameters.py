"""Notebook parameters -> one validated config per stage: the cell after a notebook's ``parameters`` cell runs
``config = MADSConfig.from_parameters(globals())``, so a wrong value or type (``papermill ... -p num_dialogues abc``)
is reported by parameter name before any work starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class ParameterError(ValueError):
    """A notebook parameter (or recipe value) that a stage cannot use, named with the fix."""


class StageConfig(BaseModel):
    """Base of the stage configs: unknown fields are errors, values are re-checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def from_parameters(cls, namespace: Mapping[str, Any], **overrides: Any):
        """The config from a notebook's variables (``globals()``): every field found there, plus ``overrides``.

        Variables that are not fields (imports, other cells' results) are ignored; a field missing from the
        notebook keeps its default.
        """
        values = {name: namespace[name] for name in cls.model_fields if name in namespace}
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as error:
            lines = []  # one per bad parameter: its name, what was wrong, the value given
            for problem in error.errors():
                name = ".".join(str(part) for part in problem["loc"]) or "(config)"
                given = problem.get("input")
                shown = f", got {given!r}" if not isinstance(given, Mapping) else ""
                lines.append(f"  parameter {name!r}: {problem['msg']}{shown}")
            raise ParameterError(f"{cls.__name__}: invalid parameters\n" + "\n".join(lines) +
                                 "\nSet them in the notebook's parameters cell, with papermill -p NAME VALUE, "
                                 "or in the recipe passed with -f.") from None
