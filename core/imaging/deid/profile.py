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
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Final

from core.errors import ConfigError

__all__ = [
    "TABLE_FILE",
    "Action",
    "Pattern",
    "Profile",
    "ProfileOption",
    "Rule",
    "load_profile",
    "profile_from_document",
    "table_sha256",
]

#: The table's file name inside ``core.imaging.deid``.
TABLE_FILE: Final = "basic_profile.json"
_PACKAGE: Final = "core.imaging.deid"
# Wildcard rows are written ggxxeeee: "xx" stands for the even groups of a repeating group
# (PS3.5 7.6: curves 5000-501E, overlays 6000-601E), "xxxx" for every element of those groups.
_REPEATING_BASES: Final = frozenset({0x5000, 0x6000})
# What a D on a sequence may resolve to: Vigil never invents sequence items.
_SEQUENCE_DUMMIES: Final = frozenset({"X", "Z"})


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
class Pattern:
    """One wildcard row of Table E.1-1 (``"60xx3000"``): an element of every group of a repeating group.

    Attributes
    ----------
    text : str
        As the table writes it.
    base : int
        The first group (``0x5000`` curves, ``0x6000`` overlays); the row covers the 16 even
        groups from it.
    element : int or None
        The element, or None for every element of those groups (``"50xxxxxx"``).
    action : Action
        The row's basic action.
    """

    text: str
    base: int
    element: int | None
    action: Action

    def matches(self, tag: int) -> bool:
        """True when ``tag`` (``0xggggeeee``) is one this row covers."""
        group, element = tag >> 16, tag & 0xFFFF
        in_groups = self.base <= group < self.base + 0x20 and not group & 1
        return in_groups and (self.element is None or element == self.element)


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
    patterns : tuple of Pattern
        The wildcard rows (curves, overlay data and comments).
    sequence_dummy : Action
        What a ``D`` does to a sequence: ``Z`` (emptied) or ``X`` (removed).
    remove_unknown_public : bool
        Remove an even-group attribute the data dictionary does not know (else keep it).
    remove_group_lengths : bool
        Remove group lengths ``(gggg,0000)`` (else keep them).
    remove_whole_overlay_groups : bool
        Remove every element of the overlay groups 6000-601E, not only the rows' Overlay Data and
        Overlay Comments.
    offered_options : frozenset of str
        The options the table marks ``offered``: exactly :class:`ProfileOption`'s values.
    """

    edition: str
    revision: int
    sha256: str
    rules: Mapping[int, Rule]
    option_codes: Mapping[str, tuple[str, str]]
    dummies: Mapping[str, str]
    remove_unlisted_vrs: frozenset[str]
    patterns: tuple[Pattern, ...]
    sequence_dummy: Action
    remove_unknown_public: bool
    remove_group_lengths: bool
    remove_whole_overlay_groups: bool
    offered_options: frozenset[str]

    def pattern_action(self, tag: int) -> Action | None:
        """The action of the first wildcard row covering ``tag``, or None when none does."""
        return next((p.action for p in self.patterns if p.matches(tag)), None)

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
        As :func:`profile_from_document`.
    """
    text = resources.files(_PACKAGE).joinpath(TABLE_FILE).read_text(encoding="utf-8")
    return profile_from_document(json.loads(text))


def profile_from_document(document: Mapping[str, Any]) -> Profile:
    """Check and index a table document (``basic_profile.json`` as parsed JSON).

    Every switch of the ``vigil`` section is read here and acted on in
    :mod:`core.imaging.deid.apply`; its ``notes`` only explain them.

    Raises
    ------
    ConfigError
        The table names a code, compound code, option, wildcard pattern or switch value this code
        does not apply, or its offered options are not exactly :class:`ProfileOption`.
    """
    compound = {code: Action(resolved) for code, resolved in document["compound"].items()}
    vigil = document["vigil"]
    return Profile(
        edition=str(document["edition"]),
        revision=int(document["revision"]),
        sha256=table_sha256(document),
        rules={rule.tag: rule for rule in (_rule(row, compound) for row in document["attributes"])},
        option_codes={name: (str(o["code"]), str(o["meaning"])) for name, o in document["options"].items()},
        dummies=dict(vigil["dummies"]),
        remove_unlisted_vrs=frozenset(vigil["remove_unlisted_vrs"]),
        patterns=tuple(_pattern(row) for row in document["patterns"]),
        sequence_dummy=_sequence_dummy(vigil["sequence_dummy"]),
        remove_unknown_public=_switch(vigil, "remove_unknown_public"),
        remove_group_lengths=_switch(vigil, "remove_group_lengths"),
        remove_whole_overlay_groups=_switch(vigil, "remove_whole_overlay_groups"),
        offered_options=_offered(document["options"]),
    )


def _switch(vigil: Mapping[str, Any], name: str) -> bool:
    value = vigil[name]
    if not isinstance(value, bool):
        raise ConfigError(f"{TABLE_FILE}: vigil.{name} is {value!r}, expected true or false")
    return value


def _sequence_dummy(code: str) -> Action:
    if code not in _SEQUENCE_DUMMIES:
        raise ConfigError(f"{TABLE_FILE}: vigil.sequence_dummy is {code!r}, expected X or Z")
    return Action(code)


def _offered(options: Mapping[str, Any]) -> frozenset[str]:
    # The table says which options Vigil offers; ProfileOption is the code that honours them.
    offered = frozenset(name for name, o in options.items() if o["offered"])
    implemented = frozenset(o.value for o in ProfileOption)
    if offered != implemented:
        mismatch = sorted(offered ^ implemented)[0]
        raise ConfigError(
            f"{TABLE_FILE}: option {mismatch!r} is {'offered' if mismatch in offered else 'not offered'} "
            "by the table but Vigil's options say otherwise"
        )
    return offered


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


def _pattern(row: Mapping[str, Any]) -> Pattern:
    text = str(row["tag"])
    group, element = text[:4], text[4:]
    base = int(group[:2], 16) << 8 if group[2:] == "xx" and group[:2] in ("50", "60") else None
    if base not in _REPEATING_BASES or not (element == "xxxx" or _is_hex(element)):
        raise ConfigError(f"{TABLE_FILE}: wildcard row {text!r} is not one Vigil applies")
    try:
        action = Action(str(row["basic"]))
    except ValueError:
        raise ConfigError(f"{TABLE_FILE}: wildcard row {text!r} has action {row['basic']!r}") from None
    return Pattern(text=text, base=base, element=None if element == "xxxx" else int(element, 16), action=action)


def _is_hex(text: str) -> bool:
    return len(text) == 4 and all(c in "0123456789abcdefABCDEF" for c in text)
