"""Shared type aliases, so every module names the same concept the same way.

The array aliases are built on first use (PEP 562 ``__getattr__``), so that a module needing only
the JSON aliases (the audit ledger, ``vigil audit verify``) does not import numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

__all__ = ["BoolArray", "FloatArray", "IntArray", "JSONValue", "JSONObject", "StudyUID", "SiteName"]

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    #: Image or score arrays; float32 for pixels and maps, float64 for statistics.
    FloatArray: TypeAlias = npt.NDArray[np.floating]
    IntArray: TypeAlias = npt.NDArray[np.integer]
    BoolArray: TypeAlias = npt.NDArray[np.bool_]
else:

    def __getattr__(name: str) -> object:
        """``FloatArray``, ``IntArray`` and ``BoolArray``, importing numpy the first time one is asked for."""
        if name not in ("FloatArray", "IntArray", "BoolArray"):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import numpy as np
        import numpy.typing as npt

        aliases = {
            "FloatArray": npt.NDArray[np.floating],
            "IntArray": npt.NDArray[np.integer],
            "BoolArray": npt.NDArray[np.bool_],
        }
        globals().update(aliases)
        return aliases[name]


#: Anything that survives canonical JSON: the payload type of audit entries and model cards.
JSONValue: TypeAlias = "str | int | float | bool | None | list[JSONValue] | dict[str, JSONValue]"
JSONObject: TypeAlias = "dict[str, JSONValue]"

#: A DICOM StudyInstanceUID (dotted decimal, at most 64 characters).
StudyUID: TypeAlias = str
#: A site's registered name, as given to ``vigil site add``.
SiteName: TypeAlias = str
