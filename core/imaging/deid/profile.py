"""The Basic Application Level Confidentiality Profile as data: PS3.15 Table E.1-1, versioned and hashed.

The table (``basic_profile.json`` beside this module) is the product: every row of Table E.1-1
with its tag, keyword, VR, the profile's code and the option columns, as the DICOM edition named in
the file states them, plus Vigil's documented resolution of compound codes and its rules beyond the
table (the ``vigil`` section). Nothing about which attribute gets which action lives in code; the
code only interprets the table. The SHA-256 of the table's canonical JSON is written into every
de-identified file and the audit trail, so an output can always be traced to the exact table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Final

from core.errors import ConfigError

__all__ = ["TABLE_FILE", "Action", "Profile", "ProfileOption", "Rule", "load_profile", "table_sha256"]

#: The table's file name inside ``core.imaging.deid``.
TABLE_FILE: Final = "basic_profile.json"
_PACKAGE: Final = "core.imaging.deid"
# The wildcard rows of Table E.1-1 this code implements (core.imaging.deid.apply); a table naming
# another pattern is refused rather than half-applied.
_PATTERNS: Final = frozenset({"50xxxxxx", "60xx3000", "60xx4000"})


class Action(StrEnum):
    """What happens to one attribute (PS3.15 Table E.1-1 action codes, compound codes resolved)."""

    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    REPLACE_UID = "U"
    KEEP = "K"


class ProfileOption(StrEnum):
    """The profile options Vigil offers; each is off unless named (PS3.15 Table E.1-1 option columns).

    With an option on, the attributes its column marks ``K`` are kept. The columns' ``C`` (clean)
    is not implemented, so those attributes get the basic action whatever the options.
    """

    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of Table E.1-1.

    Attributes
    ----------
    tag : int
        ``0xggggeeee``.
    keyword : str
        The data dictionary keyword (``"PatientName"``).
    basic : str
        The profile's code as the standard writes it (``"X/Z"``).
    action : Action
        ``basic`` resolved (the table's ``compound`` map).
    options : Mapping[str, str]
        Option name to that option column's code (``"K"`` or ``"C"``).
    """

    tag: int
    keyword: str
    basic: str
    action: Action
    options: Mapping[str, str]

    def action_under(self, options: frozenset[ProfileOption]) -> Action:
        """The action with ``options`` on: kept when any of them marks this row ``K``."""
        if any(self.options.get(option) == "K" for option in options):
            return Action.KEEP
        return self.action


@dataclass(frozen=True, slots=True)
class Profile:
    """The loaded table.

    Attributes
    ----------
    edition : str
        The DICOM edition the rows follow (``"2024b"``).
    revision : int
        Vigil's revision of the table for that edition.
    sha256 : str
        Hex SHA-256 of the table's canonical JSON (sorted keys, no spaces, UTF-8).
    rules : Mapping[int, Rule]
        By tag.
    option_codes : Mapping[str, tuple[str, str]]
        Option name to its DCM code value and meaning (CID 7050).
    dummies : Mapping[str, str]
        VR to the dummy value a ``D`` action writes.
    remove_unlisted_vrs : frozenset of str
        VRs of public attributes the table does not list that Vigil removes all the same.
    """

    edition: str
    revision: int
    sha256: str
    rules: Mapping[int, Rule]
    option_codes: Mapping[str, tuple[str, str]]
    dummies: Mapping[str, str]
    remove_unlisted_vrs: frozenset[str]

    @property
    def version(self) -> str:
        """``"PS3.15-2024b/vigil-1"``: the edition and Vigil's revision of its table."""
        return f"PS3.15-{self.edition}/vigil-{self.revision}"


def table_sha256(document: Mapping[str, Any]) -> str:
    """Hex SHA-256 of ``document`` as canonical JSON, so that re-formatting the file keeps the hash.

    Examples
    --------
    >>> table_sha256({"b": 1, "a": [2]}) == table_sha256({"a": [2], "b": 1})
    True
    """
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@cache
def load_profile() -> Profile:
    """Read, check and index the shipped table (once per process).

    Raises
    ------
    ConfigError
        The table names a code, compound code, option or wildcard pattern this code does not apply.
    """
    text = resources.files(_PACKAGE).joinpath(TABLE_FILE).read_text(encoding="utf-8")
    document = json.loads(text)
    compound = {code: Action(resolved) for code, resolved in document["compound"].items()}
    _check_patterns(row["tag"] for row in document["patterns"])
    vigil = document["vigil"]
    return Profile(
        edition=str(document["edition"]),
        revision=int(document["revision"]),
        sha256=table_sha256(document),
        rules={rule.tag: rule for rule in (_rule(row, compound) for row in document["attributes"])},
        option_codes={name: (str(o["code"]), str(o["meaning"])) for name, o in document["options"].items()},
        dummies=dict(vigil["dummies"]),
        remove_unlisted_vrs=frozenset(vigil["remove_unlisted_vrs"]),
    )


def _rule(row: Mapping[str, Any], compound: Mapping[str, Action]) -> Rule:
    basic = str(row["basic"])
    try:
        action = compound[basic] if basic in compound else Action(basic)
    except ValueError:
        raise ConfigError(f"{TABLE_FILE}: tag {row['tag']} has action {basic!r}, which Vigil does not apply") from None
    options = {str(k): str(v) for k, v in row.get("options", {}).items()}
    if bad := sorted(v for v in options.values() if v not in ("K", "C")):
        raise ConfigError(f"{TABLE_FILE}: tag {row['tag']} has option code {bad[0]!r}, expected K or C")
    return Rule(tag=int(row["tag"], 16), keyword=str(row["keyword"]), basic=basic, action=action, options=options)


def _check_patterns(patterns: Iterable[str]) -> None:
    unknown = sorted(set(patterns) - _PATTERNS)
    if unknown:
        raise ConfigError(f"{TABLE_FILE}: wildcard row {unknown[0]!r} is not one Vigil applies")
