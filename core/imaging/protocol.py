"""Harmonize free-text ProtocolName values to a versioned protocol taxonomy.

Every site names the same acquisition its own way ("XR CHEST PA", "Thorax p.a.", "Chest PA"),
so protocol strata need one name per protocol. The mapping lives in
``protocol_taxonomy.json`` beside this module and carries a version. Nothing is guessed: a
value the taxonomy does not list stays visible as ``"Unmapped"`` with its raw text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

from core.errors import ConfigError

__all__ = [
    "PROTOCOL_TAXONOMY_VERSION",
    "UNMAPPED_PROTOCOL",
    "HarmonizedProtocol",
    "harmonize_protocol",
    "normalize_protocol",
    "protocol_aliases",
]

#: The protocol name given to a ProtocolName that the taxonomy does not list.
UNMAPPED_PROTOCOL: Final = "Unmapped"

_TAXONOMY_FILE: Final = "protocol_taxonomy.json"


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
    return "".join(re.findall(r"[0-9a-z]+", raw.casefold()))


def harmonize_protocol(raw: str) -> HarmonizedProtocol:
    """Map a ProtocolName to its protocol.

    Examples
    --------
    >>> harmonize_protocol("Thorax a.p. mobil").protocol
    'Chest AP portable'
    >>> harmonize_protocol("Knee 2 views")
    HarmonizedProtocol(raw='Knee 2 views', protocol='Unmapped', mapped=False)
    """
    protocol = protocol_aliases().get(normalize_protocol(raw))
    if protocol is None:
        return HarmonizedProtocol(raw=raw, protocol=UNMAPPED_PROTOCOL, mapped=False)
    return HarmonizedProtocol(raw=raw, protocol=protocol, mapped=True)


@cache
def protocol_aliases() -> dict[str, str]:
    """Map each normalized alias to its protocol name, loaded once from the taxonomy file.

    Raises
    ------
    ConfigError
        The file is malformed, or one alias names two protocols.
    """
    taxonomy = _load_taxonomy()
    protocols = taxonomy.get("protocols")
    if not isinstance(protocols, dict):
        raise ConfigError(f"{_TAXONOMY_FILE}: 'protocols' must map protocol names to lists of aliases")
    aliases: dict[str, str] = {}
    for protocol, raws in protocols.items():
        for key in [normalize_protocol(protocol), *(normalize_protocol(str(r)) for r in raws)]:
            if aliases.setdefault(key, protocol) != protocol:
                raise ConfigError(f"{_TAXONOMY_FILE}: alias {key!r} maps to both {aliases[key]!r} and {protocol!r}")
    aliases.pop("", None)  # an empty ProtocolName is never a protocol
    return aliases


def _load_taxonomy() -> dict[str, object]:
    text = resources.files("core.imaging").joinpath(_TAXONOMY_FILE).read_text(encoding="utf-8")
    taxonomy = json.loads(text)
    if not isinstance(taxonomy, dict) or not isinstance(taxonomy.get("version"), str):
        raise ConfigError(f"{_TAXONOMY_FILE} must be an object with a string 'version'")
    return taxonomy


#: Version of the taxonomy in force; recorded in every report that uses harmonized protocols.
PROTOCOL_TAXONOMY_VERSION: Final[str] = str(_load_taxonomy()["version"])
