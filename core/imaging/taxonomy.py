"""Versioned alias taxonomies shipped beside this package, shared by vendor and protocol harmonizing.

A DICOM header holds free text that every site writes its own way. A taxonomy file maps each
canonical name to the aliases sites write, and carries a version that is recorded wherever a
harmonized value is stored. Loading, checking and building the alias table is the same for every
taxonomy; how a raw value becomes a lookup key is not (a vendor drops trailing legal forms, a
protocol does not), so each taxonomy brings its own ``normalize``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

from core.errors import ConfigError

__all__ = ["UNMAPPED", "Taxonomy", "header_tokens"]

#: The name given to a header value that a taxonomy does not list.
UNMAPPED: Final = "Unmapped"

# The taxonomy files ship as package data beside the modules that use them.
_PACKAGE: Final = "core.imaging"


def header_tokens(raw: str) -> list[str]:
    """Case-folded runs of letters and digits in a header value, the basis of every lookup key.

    Examples
    --------
    >>> header_tokens("Thorax p.a.")
    ['thorax', 'p', 'a']
    """
    return re.findall(r"[0-9a-z]+", raw.casefold())


@dataclass(frozen=True, slots=True)
class Taxonomy:
    """A versioned taxonomy file: canonical names, each with the aliases sites write for it.

    Attributes
    ----------
    file : str
        The JSON file's name inside ``core.imaging``.
    section : str
        The key that maps canonical names to lists of aliases (``"vendors"``).
    noun : str
        What one canonical name is, for error messages (``"vendor"``).
    normalize : Callable[[str], str]
        Turns a raw value, a canonical name or an alias into its lookup key.
    """

    file: str
    section: str
    noun: str
    normalize: Callable[[str], str]

    def load(self) -> dict[str, object]:
        """Read and parse the taxonomy file.

        Raises
        ------
        ConfigError
            The file is not an object with a string ``version``.
        """
        text = resources.files(_PACKAGE).joinpath(self.file).read_text(encoding="utf-8")
        taxonomy = json.loads(text)
        if not isinstance(taxonomy, dict) or not isinstance(taxonomy.get("version"), str):
            raise ConfigError(f"{self.file} must be an object with a string 'version'")
        return taxonomy

    def version(self) -> str:
        """The taxonomy's version, as read from the file.

        Raises
        ------
        ConfigError
            The file is not an object with a string ``version``.
        """
        return str(self.load()["version"])

    def aliases(self) -> dict[str, str]:
        """Map each normalized alias, canonical names included, to its canonical name.

        Not cached here: each caller caches its own table, so that a test can clear one alone.

        Raises
        ------
        ConfigError
            The file is malformed, or one alias names two canonical names.
        """
        names = self.load().get(self.section)
        if not isinstance(names, dict):
            raise ConfigError(f"{self.file}: '{self.section}' must map {self.noun} names to lists of aliases")
        aliases: dict[str, str] = {}
        for name, raws in names.items():
            for key in [self.normalize(name), *(self.normalize(str(r)) for r in raws)]:
                if aliases.setdefault(key, name) != name:
                    raise ConfigError(f"{self.file}: alias {key!r} maps to both {aliases[key]!r} and {name!r}")
        aliases.pop("", None)  # an empty header value is never a name
        return aliases

    def resolve(self, raw: str, aliases: Mapping[str, str]) -> tuple[str, bool]:
        """The canonical name of a raw header value, and whether the taxonomy lists it.

        Parameters
        ----------
        raw : str
            The header value as read; ``""`` when absent.
        aliases : Mapping[str, str]
            This taxonomy's alias table, as :meth:`aliases` built it (the caller's cached copy).

        Returns
        -------
        tuple[str, bool]
            ``(name, True)``, or ``("Unmapped", False)`` when the taxonomy does not list ``raw``:
            nothing is guessed.
        """
        name = aliases.get(self.normalize(raw))
        return (UNMAPPED, False) if name is None else (name, True)
