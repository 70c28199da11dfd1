"""Notebook parameters -> one validated config per stage.

Each chapter has one pydantic config (``MADSConfig``, ``PreprocessConfig``, ``TrainConfig``, ...). The cell after a
notebook's ``parameters`` cell builds it from the notebook's variables::

    config = MADSConfig.from_parameters(globals())

so a notebook never retypes its arguments, and a wrong value or type (``papermill ... -p num_dialogues abc``) is
reported by parameter name before any work starts. The values themselves come from the parameters cell (CPU demo
defaults) or from a recipe (``papermill notebooks/01_mads.ipynb out.ipynb -f recipes/paper/01_mads.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class ParameterError(ValueError):
    """A notebook parameter (or recipe value) that a stage cannot use, named with the fix."""


def explain(error: ValidationError, stage: str) -> ParameterError:
    """One line per bad parameter: its name, what was wrong, the value given, and where to change it."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "(config)"
        given = problem.get("input")
        shown = f", got {given!r}" if not isinstance(given, Mapping) else ""
        lines.append(f"  parameter {name!r}: {problem['msg']}{shown}")
    return ParameterError(f"{stage}: invalid parameters\n" + "\n".join(lines) +
                          "\nSet them in the notebook's parameters cell, with papermill -p NAME VALUE, "
                          "or in the recipe passed with -f.")


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
            raise explain(error, cls.__name__) from None
