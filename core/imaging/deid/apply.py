"""Apply the Basic Profile to one dataset: a pure function from a pydicom Dataset to a :class:`DeidResult`.

Every element at every depth gets the action the table gives its tag (items of sequences are
datasets in their own right and are walked the same way). What the table does not list is kept,
as the profile says, except where Vigil's documented rules beyond the table remove it (the table's
``vigil`` section): free text, names, URLs, dates and times, unknown public elements, group lengths,
whole overlay groups; and unlisted UIDs that are neither DICOM-registered nor the UID of a kind
(a SOP class, a transfer syntax) are replaced like the profile's ``U``, because an instance UID the
table happens not to list still points back to the patient's study.
"""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, repeater_has_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

from core.errors import BadInputError
from core.imaging.deid.burned_in import burned_in_risk
from core.imaging.deid.private import PrivateElement
from core.imaging.deid.profile import Action, Profile, ProfileOption, load_profile
from core.imaging.deid.uids import check_secret, pseudonymous_uid
from core.imaging.depth import dataset_depth, depth_refusal

__all__ = [
    "BASIC_PROFILE_CODE",
    "PRIVATE_KEPT",
    "PRIVATE_REMOVED",
    "REPLACEABLE",
    "REPLACED",
    "SAFE_PRIVATE_CODE",
    "VIGIL_REMOVED",
    "VIGIL_REPLACED_UID",
    "DeidResult",
    "allowlist_note",
    "deidentify",
]

#: DCM 113100, the code of the profile itself in DeidentificationMethodCodeSequence (CID 7050).
BASIC_PROFILE_CODE: Final = ("113100", "Basic Application Confidentiality Profile")
#: DCM 113111, recorded when the private allow-list kept at least one element.
SAFE_PRIVATE_CODE: Final = ("113111", "Retain Safe Private Option")
#: Keys of :attr:`DeidResult.actions` beside the table's codes (X, Z, D, U, K).
PRIVATE_REMOVED: Final = "private_removed"
PRIVATE_KEPT: Final = "private_kept"
VIGIL_REMOVED: Final = "vigil_removed"
VIGIL_REPLACED_UID: Final = "vigil_replaced_uid"
#: Key of :attr:`DeidResult.actions` counting the caller's replacements (``deidentify(replacements=...)``).
REPLACED: Final = "replaced"

_DATE_VRS: Final = frozenset({"DA", "DT", "TM"})
_BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Eight zero bytes: a whole number of values for every binary VR (OD and OV have 8-byte values).
_BINARY_DUMMY: Final = b"\x00" * 8
_REGISTERED_UID_ROOT: Final = "1.2.840.10008."
# Unlisted UIDs that name a kind of thing, not an instance: kept as they are.
_KIND_UID_MARKERS: Final = ("ClassUID", "TransferSyntaxUID", "CodingSchemeUID")
# Overlays: the even groups 6000-601E (PS3.5 7.6); the table's switch may remove them whole.
_OVERLAY_GROUPS: Final = range(0x6000, 0x6020, 2)
#: Actions after which a caller may set its own value (a keyed pseudonym): the profile allows a
#: replacement value there (Z: "a zero length value, or a non-zero length value that may be a dummy";
#: D: "a non-zero length value that may be a dummy"), never where it removes, keeps or remaps a UID.
REPLACEABLE: Final = frozenset({Action.EMPTY, Action.DUMMY})
# The longest value of each text VR a replacement may take (PS3.5 Table 6.2-1), in characters.
_MAX_CHARS: Final = {"AE": 16, "CS": 16, "LO": 64, "SH": 16, "PN": 64}
_NO_REPLACEMENTS: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class DeidResult:
    """What de-identifying one dataset gave.

    Attributes
    ----------
    dataset : Dataset or None
        The de-identified copy (the input is never changed); None when quarantined.
    quarantine_reason : str or None
        One sentence when the object must not be released (burned-in annotation risk), naming
        no value from the file; None when released.
    actions : Mapping[str, int]
        How many elements got each action, at every depth: the table's codes ``X``, ``Z``, ``D``,
        ``U``, ``K`` (kept by an option) and Vigil's :data:`PRIVATE_REMOVED`, :data:`PRIVATE_KEPT`,
        :data:`VIGIL_REMOVED`, :data:`VIGIL_REPLACED_UID`. Empty when quarantined.
    profile_version : str
        ``Profile.version`` of the table applied.
    table_sha256 : str
        ``Profile.sha256`` of the table applied.
    options : tuple of str
        The profile options that were on, sorted.
    """

    dataset: Dataset | None
    quarantine_reason: str | None
    actions: Mapping[str, int]
    profile_version: str
    table_sha256: str
    options: tuple[str, ...]

    @property
    def released(self) -> bool:
        """True when :attr:`dataset` may leave the site."""
        return self.quarantine_reason is None


@dataclass(frozen=True, slots=True)
class _Context:
    """What every element of one de-identification shares; ``counts`` is the one thing that grows."""

    secret: bytes
    options: frozenset[ProfileOption]
    allowed: frozenset[tuple[int, str, int]]
    profile: Profile
    counts: Counter[str]
    allowlist_note: str | None = None


def deidentify(
    ds: Dataset,
    *,
    secret: bytes,
    options: Iterable[ProfileOption | str] = (),
    private_allowlist: Iterable[PrivateElement] = (),
    profile: Profile | None = None,
    replacements: Mapping[str, str] = _NO_REPLACEMENTS,
) -> DeidResult:
    """Apply the Basic Application Level Confidentiality Profile to a copy of ``ds``.

    Parameters
    ----------
    ds : Dataset
        Any DICOM dataset; it is not changed.
    secret : bytes
        The site's de-identification key (at least 16 bytes); UIDs are replaced by
        :func:`~core.imaging.deid.uids.pseudonymous_uid` under it.
    options : iterable of ProfileOption or str
        Profile options to turn on; none by default.
    private_allowlist : iterable of PrivateElement
        Private elements to keep; every other private element is removed.
    profile : Profile, optional
        The table; the shipped one when omitted.
    replacements : Mapping[str, str]
        Keyword to value, set at the top level after the profile ran: a value the caller made,
        such as ingest's keyed pseudonym of the PatientID (``core.services.deidentify``). Only for
        attributes the table empties or dummies under ``options`` (:data:`REPLACEABLE`), in a
        text VR and within its length; an empty value leaves the profile's result.

    Returns
    -------
    DeidResult
        Quarantined, with nothing de-identified, when :func:`burned_in_risk` finds a reason.
        Otherwise the copy carries PatientIdentityRemoved ``YES``, DeidentificationMethod (the
        profile, the table's version and its SHA-256, and :func:`allowlist_note` when a private
        allow-list was given), DeidentificationMethodCodeSequence
        (113100 and the options' codes) and LongitudinalTemporalInformationModified.

    Raises
    ------
    BadInputError
        ``secret`` is too short, an option is not one of :class:`ProfileOption`, ``ds`` nests
        sequences deeper than :data:`~core.imaging.depth.MAX_SEQUENCE_DEPTH` (measured
        without recursion, before anything is copied: copying recurses once per level), or a
        replacement names an attribute the profile does not empty or dummy, or does not fit its VR.
    """
    check_secret(secret)
    if (too_deep := depth_refusal(dataset_depth(ds))) is not None:
        raise BadInputError(f"the data set cannot be de-identified: {too_deep}")
    table = profile if profile is not None else load_profile()
    chosen = frozenset(_option(o) for o in options)
    replacing = _checked_replacements(replacements, table, chosen)
    names = tuple(sorted(o.value for o in chosen))
    reason = burned_in_risk(ds)
    if reason is not None:
        return DeidResult(None, reason, {}, table.version, table.sha256, names)
    allowed = frozenset((p.group, p.creator.strip(), p.offset) for p in private_allowlist)
    ctx = _Context(secret, chosen, allowed, table, Counter(), allowlist_note(allowed))
    out = copy.deepcopy(ds)
    _clean(out, ctx)
    for tag, value in replacing:
        out.add_new(tag, dictionary_VR(tag), value)
        ctx.counts[REPLACED] += 1
    _mark(out, ctx)
    return DeidResult(out, None, dict(sorted(ctx.counts.items())), table.version, table.sha256, names)


def allowlist_note(allowed: Iterable[tuple[int, str, int]]) -> str | None:
    """The DeidentificationMethod value naming a private allow-list: its size and a digest of it.

    None for an empty list. The digest (12 hex digits of SHA-256 over the sorted entries) lets a
    receiver match a file to the allow-list its site configured (the audit entry lists the
    entries) without the file spelling out the site's vendor list. At most 64 characters (LO).

    Examples
    --------
    >>> allowlist_note([(0x0019, "ACME 1.1", 0x0C)])
    'Vigil private allow-list: 1 element(s), a14833a3099f'
    >>> allowlist_note([]) is None
    True
    """
    entries = sorted(set(allowed))
    if not entries:
        return None
    text = "\n".join(f"({g:04X},xx{o:02X}) {c}" for g, c, o in entries)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return f"Vigil private allow-list: {len(entries)} element(s), {digest}"


def _checked_replacements(
    replacements: Mapping[str, str], table: Profile, options: frozenset[ProfileOption]
) -> list[tuple[int, str]]:
    """``(tag, value)`` of each non-empty replacement, refused unless the profile allows a value there."""
    out = []
    for keyword, value in sorted(replacements.items()):
        tag = tag_for_keyword(keyword)
        rule = table.rules.get(tag) if tag is not None else None
        if tag is None or rule is None or rule.action_under(options) not in REPLACEABLE:
            raise BadInputError(f"{keyword!r} cannot be replaced: the profile does not empty or dummy it")
        vr = dictionary_VR(tag)
        if vr not in _MAX_CHARS:
            raise BadInputError(f"{keyword!r} cannot be replaced: its VR {vr} is not a text VR")
        if len(value) > _MAX_CHARS[vr] or "\\" in value:
            raise BadInputError(
                f"the replacement for {keyword!r} is {len(value)} characters long or holds a backslash; "
                f"{vr} allows at most {_MAX_CHARS[vr]} and no backslash"
            )
        if value:
            out.append((tag, value))
    return out


def _option(value: ProfileOption | str) -> ProfileOption:
    try:
        return ProfileOption(value)
    except ValueError:
        choices = ", ".join(o.value for o in ProfileOption)
        raise BadInputError(f"unknown de-identification option {value!r} (choose from {choices})") from None


def _clean(ds: Dataset, ctx: _Context) -> None:
    """De-identify ``ds`` in place: its private elements, then every public element, items included."""
    _clean_private(ds, ctx)
    for tag in [t for t in ds.keys() if not t.is_private]:
        _apply(ds, ds[tag], ctx)


def _apply(ds: Dataset, elem: DataElement, ctx: _Context) -> None:
    action, key = _action_for(elem, ctx)
    if action is Action.DUMMY and elem.VR == "SQ":
        action = ctx.profile.sequence_dummy  # the table's vigil.sequence_dummy: Vigil never invents items
    if action is Action.REPLACE_UID and elem.VR != "UI":
        action = Action.REMOVE  # a UID whose VR was lost (UN) cannot be remapped, so it goes
    if action is Action.REMOVE:
        del ds[elem.tag]
    elif action is Action.EMPTY:
        elem.value = DicomSequence() if elem.VR == "SQ" else None
    elif action is Action.DUMMY:
        _dummy(elem, ctx)
    elif action is Action.REPLACE_UID:
        _replace_uids(elem, ctx)
    elif elem.VR == "SQ":
        for item in elem.value:
            _clean(item, ctx)
    if key is not None:
        ctx.counts[key] += 1


#: The first group of a data set's own attributes; lower groups are file meta and directory records.
_FIRST_DATA_GROUP: Final = 0x0008


def _action_for(elem: DataElement, ctx: _Context) -> tuple[Action, str | None]:
    """The action for one public element and the count it adds to (None: kept without comment)."""
    tag: BaseTag = elem.tag
    table = ctx.profile
    if tag.element == 0:  # a group length: structure, judged by its own switch alone
        return (Action.REMOVE, VIGIL_REMOVED) if table.remove_group_lengths else (Action.KEEP, None)
    if (pattern := table.pattern_action(int(tag))) is not None:
        return pattern, pattern.value  # curves, overlay data and comments
    if tag.group in _OVERLAY_GROUPS and table.remove_whole_overlay_groups:
        return Action.REMOVE, VIGIL_REMOVED
    rule = table.rules.get(int(tag))
    if rule is not None:
        action = rule.action_under(ctx.options)
        return action, action.value
    if tag.group < _FIRST_DATA_GROUP:
        # Below group 0008 only directory records are left (the file meta group is rebuilt):
        # ReferencedFileID there is a file path, which sites often spell with the patient's name.
        return Action.REMOVE, VIGIL_REMOVED
    if table.remove_unknown_public and not (dictionary_has_tag(tag) or repeater_has_tag(tag)):
        return Action.REMOVE, VIGIL_REMOVED
    return _unlisted_action(elem, ctx)


def _unlisted_action(elem: DataElement, ctx: _Context) -> tuple[Action, str | None]:
    vr = elem.VR
    if vr in _DATE_VRS and ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in ctx.options:
        return Action.KEEP, None
    if vr in ctx.profile.remove_unlisted_vrs:
        return Action.REMOVE, VIGIL_REMOVED
    if vr == "UI" and _instance_uid(elem):
        return Action.REPLACE_UID, VIGIL_REPLACED_UID
    return Action.KEEP, None


def _instance_uid(elem: DataElement) -> bool:
    """True for an unlisted UID element that may identify an instance (not a kind, not DICOM-registered)."""
    keyword = keyword_for_tag(elem.tag)
    if any(marker in keyword for marker in _KIND_UID_MARKERS):
        return False
    return any(not str(v).startswith(_REGISTERED_UID_ROOT) for v in _values(elem.value))


def _dummy(elem: DataElement, ctx: _Context) -> None:
    vr = elem.VR
    if vr == "UI":
        _replace_uids(elem, ctx)
    elif vr in ctx.profile.dummies:
        elem.value = ctx.profile.dummies[vr]
    elif vr in _BINARY_VRS:
        elem.value = _BINARY_DUMMY
    else:
        elem.value = 0  # US, SS, UL, SL, FL, FD, SV, UV, AT


def _replace_uids(elem: DataElement, ctx: _Context) -> None:
    new = [pseudonymous_uid(ctx.secret, str(v)) for v in _values(elem.value) if str(v).strip("\x00 ")]
    elem.value = new[0] if len(new) == 1 else (new or None)


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]


def _clean_private(ds: Dataset, ctx: _Context) -> None:
    """Remove every private element not allow-listed, and the creators of blocks left empty."""
    private = [t for t in ds.keys() if t.is_private]
    creators = {int(t): _text(ds[t].value) for t in private if 0x10 <= t.element <= 0xFF}
    kept_blocks: set[int] = set()
    for tag in private:
        if tag.element <= 0xFF:
            continue  # creators are settled below; group lengths and 0001-000F go with them
        block = (tag.group << 16) | (tag.element >> 8)
        if (tag.group, creators.get(block), tag.element & 0xFF) in ctx.allowed:
            kept_blocks.add(block)
            ctx.counts[PRIVATE_KEPT] += 1
            if ds[tag].VR == "SQ":
                for item in ds[tag].value:
                    _clean(item, ctx)
        else:
            del ds[tag]
            ctx.counts[PRIVATE_REMOVED] += 1
    for tag in private:
        if tag.element <= 0xFF and int(tag) not in kept_blocks:
            del ds[tag]
            ctx.counts[PRIVATE_REMOVED] += 1


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")  # a creator read as UN; latin-1 maps every byte
    return str(value or "").strip()


def _mark(ds: Dataset, ctx: _Context) -> None:
    """Record on ``ds`` that, and how, it was de-identified (PS3.15 E.1.1, PS3.3 C.7.1.1)."""
    table = ctx.profile
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [
        f"{BASIC_PROFILE_CODE[1]} (PS3.15 {table.edition})",
        f"Vigil table {table.version}",
        table.sha256,  # 64 hex digits: exactly the longest LO value
        *([ctx.allowlist_note] if ctx.allowlist_note else []),
    ]
    codes = [BASIC_PROFILE_CODE, *(table.option_codes[o.value] for o in sorted(ctx.options))]
    if ctx.counts[PRIVATE_KEPT]:
        codes.append(SAFE_PRIVATE_CODE)
    ds.DeidentificationMethodCodeSequence = DicomSequence([_code_item(value, meaning) for value, meaning in codes])
    full_dates = ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in ctx.options
    ds.LongitudinalTemporalInformationModified = "UNMODIFIED" if full_dates else "REMOVED"


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
