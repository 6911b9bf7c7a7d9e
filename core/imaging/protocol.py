"""Harmonize free-text ProtocolName values to a versioned protocol taxonomy.

Every site names the same acquisition its own way ("XR CHEST PA", "Thorax p.a.", "Chest PA"),
so protocol strata need one name per protocol. The mapping lives in
``protocol_taxonomy.json`` beside this module and carries a version. Nothing is guessed: a
value the taxonomy does not list stays visible as ``"Unmapped"`` with its raw text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Final

from core.imaging.taxonomy import UNMAPPED, Taxonomy, header_tokens

__all__ = [
    "PROTOCOL_TAXONOMY_VERSION",
    "UNMAPPED_PROTOCOL",
    "HarmonizedProtocol",
    "harmonize_protocol",
    "normalize_protocol",
    "protocol_aliases",
]

#: The protocol name given to a ProtocolName that the taxonomy does not list.
UNMAPPED_PROTOCOL: Final = UNMAPPED


@dataclass(frozen=True, slots=True)
class HarmonizedProtocol:
    """A ProtocolName and the protocol it maps to.

    Attributes
    ----------
    raw : str
        The value as written in the file (``""`` when absent).
    protocol : str
        The taxonomy's protocol name, or ``"Unmapped"``.
    mapped : bool
        Whether the taxonomy lists ``raw``.
    """

    raw: str
    protocol: str
    mapped: bool


def normalize_protocol(raw: str) -> str:
    """Case-, space- and punctuation-insensitive key of a ProtocolName.

    Examples
    --------
    >>> normalize_protocol("Thorax p.a.")
    'thoraxpa'
    """
    return "".join(header_tokens(raw))


@lru_cache(maxsize=4096)  # validate and drift ask once per study: a million times, for a handful of names
def harmonize_protocol(raw: str) -> HarmonizedProtocol:
    """Map a ProtocolName to its protocol.

    Examples
    --------
    >>> harmonize_protocol("Thorax a.p. mobil").protocol
    'Chest AP portable'
    >>> harmonize_protocol("Knee 2 views")
    HarmonizedProtocol(raw='Knee 2 views', protocol='Unmapped', mapped=False)
    """
    protocol, mapped = _PROTOCOLS.resolve(raw, protocol_aliases())
    return HarmonizedProtocol(raw=raw, protocol=protocol, mapped=mapped)


@cache
def protocol_aliases() -> dict[str, str]:
    """Map each normalized alias to its protocol name, loaded once from the taxonomy file.

    Raises
    ------
    ConfigError
        The file is malformed, or one alias names two protocols.
    """
    return _PROTOCOLS.aliases()


# Protocol keys keep every token: unlike a Manufacturer string, a ProtocolName has no legal form to drop.
_PROTOCOLS: Final = Taxonomy(
    file="protocol_taxonomy.json", section="protocols", noun="protocol", normalize=normalize_protocol
)

#: Version of the taxonomy in force; recorded in every report that uses harmonized protocols.
PROTOCOL_TAXONOMY_VERSION: Final[str] = _PROTOCOLS.version()
