"""Shared type aliases, so every module names the same concept the same way."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "FloatArray", "IntArray", "JSONValue", "JSONObject", "StudyUID", "SiteName"]

#: Image or score arrays; float32 for pixels and maps, float64 for statistics.
FloatArray: TypeAlias = npt.NDArray[np.floating]
IntArray: TypeAlias = npt.NDArray[np.integer]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

#: Anything that survives canonical JSON: the payload type of audit entries and model cards.
JSONValue: TypeAlias = "str | int | float | bool | None | list[JSONValue] | dict[str, JSONValue]"
JSONObject: TypeAlias = "dict[str, JSONValue]"

#: A DICOM StudyInstanceUID (dotted decimal, at most 64 characters).
StudyUID: TypeAlias = str
#: A site's registered name, as given to ``vigil site add``.
SiteName: TypeAlias = str
