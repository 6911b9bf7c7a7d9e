"""Harmonize free-text Manufacturer strings to a versioned vendor taxonomy.

Sites write the same vendor many ways ("GE MEDICAL SYSTEMS", "GE Healthcare"); site
comparisons need one name per vendor. The mapping lives in ``vendor_taxonomy.json`` beside
this module and carries a version, recorded wherever a harmonized value is stored. Nothing is
guessed: a string the taxonomy does not list stays visible as ``"Unmapped"`` with its raw value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from core.errors import ConfigError

__all__ = ["TAXONOMY_VERSION", "UNMAPPED", "HarmonizedVendor", "harmonize_vendor", "normalize_vendor", "vendor_aliases"]

#: The vendor name given to a Manufacturer string that the taxonomy does not list.
UNMAPPED: Final = "Unmapped"

_TAXONOMY_FILE: Final = "vendor_taxonomy.json"
# Trailing legal forms say nothing about the vendor ("Canon Inc." is "Canon").
_LEGAL_FORMS: Final = frozenset(
    {"inc", "corp", "corporation", "co", "company", "ltd", "limited", "llc", "gmbh", "ag", "bv", "nv", "sa", "plc"}
)


@dataclass(frozen=True, slots=True)
class HarmonizedVendor:
    """A Manufacturer string and the vendor it maps to.

    Attributes
    ----------
    raw : str
        The value as written in the file.
    vendor : str
        The taxonomy's vendor name, or ``"Unmapped"``.
    mapped : bool
        Whether the taxonomy lists ``raw``.
    """

    raw: str
    vendor: str
    mapped: bool


def normalize_vendor(raw: str) -> str:
    """Case-, space- and punctuation-insensitive key of a Manufacturer string.

    Examples
    --------
    >>> normalize_vendor("FUJI PHOTO FILM Co., ltd.")
    'fujiphotofilm'
    """
    tokens = re.findall(r"[0-9a-z]+", raw.casefold())
    while len(tokens) > 1 and tokens[-1] in _LEGAL_FORMS:
        tokens.pop()
    return "".join(tokens)


def harmonize_vendor(raw: str) -> HarmonizedVendor:
    """Map a Manufacturer string to its vendor.

    Parameters
    ----------
    raw : str
        (0008,0070) Manufacturer as read; ``""`` when absent.

    Returns
    -------
    HarmonizedVendor
        ``mapped=False`` and ``vendor="Unmapped"`` when the taxonomy does not list ``raw``.

    Examples
    --------
    >>> harmonize_vendor("GE MEDICAL SYSTEMS").vendor
    'GE'
    >>> harmonize_vendor("Acme Imaging")
    HarmonizedVendor(raw='Acme Imaging', vendor='Unmapped', mapped=False)
    """
    vendor = vendor_aliases().get(normalize_vendor(raw))
    if vendor is None:
        return HarmonizedVendor(raw=raw, vendor=UNMAPPED, mapped=False)
    return HarmonizedVendor(raw=raw, vendor=vendor, mapped=True)


@cache
def vendor_aliases() -> dict[str, str]:
    """Map each normalized alias to its vendor name, loaded once from the taxonomy file.

    Raises
    ------
    ConfigError
        The file is malformed, or one alias names two vendors.
    """
    return _aliases(_load_taxonomy())


def _load_taxonomy() -> dict[str, object]:
    text = resources.files("core.imaging").joinpath(_TAXONOMY_FILE).read_text(encoding="utf-8")
    taxonomy = json.loads(text)
    if not isinstance(taxonomy, dict) or not isinstance(taxonomy.get("version"), str):
        raise ConfigError(f"{_TAXONOMY_FILE} must be an object with a string 'version'")
    return taxonomy


def _aliases(taxonomy: dict[str, object]) -> dict[str, str]:
    vendors = taxonomy.get("vendors")
    if not isinstance(vendors, dict):
        raise ConfigError(f"{_TAXONOMY_FILE}: 'vendors' must map vendor names to lists of aliases")
    aliases: dict[str, str] = {}
    for vendor, raws in vendors.items():
        for key in [normalize_vendor(vendor), *(normalize_vendor(str(r)) for r in raws)]:
            if aliases.setdefault(key, vendor) != vendor:
                raise ConfigError(f"{_TAXONOMY_FILE}: alias {key!r} maps to both {aliases[key]!r} and {vendor!r}")
    aliases.pop("", None)  # an empty Manufacturer is never a vendor
    return aliases


#: Version of the taxonomy in force; store it beside every harmonized value.
TAXONOMY_VERSION: Final[str] = str(_load_taxonomy()["version"])
