"""Harmonize free-text Manufacturer strings to a versioned vendor taxonomy.

Sites write the same vendor many ways ("GE MEDICAL SYSTEMS", "GE Healthcare"); site
comparisons need one name per vendor. The mapping lives in ``vendor_taxonomy.json`` beside
this module and carries a version, recorded wherever a harmonized value is stored. Nothing is
guessed: a string the taxonomy does not list stays visible as ``"Unmapped"`` with its raw value.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

from core.imaging.taxonomy import UNMAPPED, Taxonomy, header_tokens

__all__ = ["TAXONOMY_VERSION", "UNMAPPED", "HarmonizedVendor", "harmonize_vendor", "normalize_vendor", "vendor_aliases"]

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
    tokens = header_tokens(raw)
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
    vendor, mapped = _VENDORS.resolve(raw, vendor_aliases())
    return HarmonizedVendor(raw=raw, vendor=vendor, mapped=mapped)


@cache
def vendor_aliases() -> dict[str, str]:
    """Map each normalized alias to its vendor name, loaded once from the taxonomy file.

    Raises
    ------
    ConfigError
        The file is malformed, or one alias names two vendors.
    """
    return _VENDORS.aliases()


# Unlike protocols, vendor keys also drop trailing legal forms: see normalize_vendor.
_VENDORS: Final = Taxonomy(file="vendor_taxonomy.json", section="vendors", noun="vendor", normalize=normalize_vendor)

#: Version of the taxonomy in force; store it beside every harmonized value.
TAXONOMY_VERSION: Final[str] = _VENDORS.version()
