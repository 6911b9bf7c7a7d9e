"""The Basic Profile table: complete, consistent with the data dictionary, versioned and hashed."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from importlib import resources

import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from core.errors import ConfigError
from core.imaging.deid import Action, Profile, ProfileOption, deidentify, load_profile, table_sha256
from core.imaging.deid.profile import profile_from_document
from tests.core.imaging.deid.conftest import SECRET


def _document() -> dict[str, object]:
    text = resources.files("core.imaging.deid").joinpath("basic_profile.json").read_text(encoding="utf-8")
    loaded: dict[str, object] = json.loads(text)
    return loaded


def test_the_table_holds_every_row_of_table_e11() -> None:
    # PS3.15 2024b lists 617 attributes by tag, three wildcard rows (curves, overlay data and
    # comments) and the private attributes row.
    profile = load_profile()
    doc = _document()
    assert len(profile.rules) == 617
    assert {row["tag"] for row in doc["patterns"]} == {"50xxxxxx", "60xx3000", "60xx4000"}  # type: ignore[index, union-attr]
    assert doc["private"]["basic"] == "X"  # type: ignore[index]


def test_every_row_matches_the_data_dictionary() -> None:
    rows = _document()["attributes"]
    assert isinstance(rows, list)
    for row in rows:
        tag = int(row["tag"], 16)
        assert keyword_for_tag(tag) == row["keyword"], row
        assert dictionary_VR(tag) == row["vr"], row


@pytest.mark.parametrize(
    ("keyword", "basic", "action"),
    [
        ("PatientName", "Z", Action.EMPTY),
        ("PatientID", "Z/D", Action.EMPTY),
        ("PatientBirthDate", "Z", Action.EMPTY),
        ("OtherPatientIDs", "X", Action.REMOVE),
        ("OtherPatientIDsSequence", "X", Action.REMOVE),
        ("StudyInstanceUID", "U", Action.REPLACE_UID),
        ("SOPInstanceUID", "U", Action.REPLACE_UID),
        ("InstitutionName", "X/Z/D", Action.REMOVE),
        ("ReferencedImageSequence", "X/Z/U*", Action.REMOVE),
        ("ContentDate", "Z/D", Action.EMPTY),
        ("AcquisitionDate", "X/Z", Action.REMOVE),
        ("PersonName", "D", Action.DUMMY),
    ],
)
def test_known_rows_resolve_as_documented(keyword: str, basic: str, action: Action) -> None:
    rule = load_profile().rules[tag_for_keyword(keyword)]
    assert (rule.basic, rule.action) == (basic, action)


def test_options_keep_only_what_their_column_marks_k() -> None:
    profile = load_profile()
    date = profile.rules[tag_for_keyword("StudyDate")]
    sex = profile.rules[tag_for_keyword("PatientSex")]
    allergies = profile.rules[tag_for_keyword("Allergies")]  # C in the characteristics column
    full = frozenset({ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES})
    chars = frozenset({ProfileOption.RETAIN_PATIENT_CHARACTERISTICS})
    assert date.action_under(frozenset()) is Action.EMPTY and date.action_under(full) is Action.KEEP
    assert sex.action_under(chars) is Action.KEEP and sex.action_under(full) is Action.EMPTY
    assert allergies.action_under(chars) is Action.REMOVE


def test_the_hash_is_of_the_canonical_table_and_the_version_names_the_edition() -> None:
    profile = load_profile()
    assert profile.sha256 == table_sha256(_document())
    assert len(profile.sha256) == 64
    assert profile.version == "PS3.15-2024b/vigil-1"


def test_every_offered_option_has_its_dcm_code() -> None:
    codes = load_profile().option_codes
    assert {o.value for o in ProfileOption} <= set(codes)
    assert codes["retain_longitudinal_full_dates"][0] == "113106"


# --- the table's vigil switches drive behaviour --------------------------------------------------


def _variant(**switches: object) -> Profile:
    """The shipped table with some of its ``vigil`` switches changed."""
    doc = copy.deepcopy(_document())
    doc["vigil"].update(switches)  # type: ignore[attr-defined]
    return profile_from_document(doc)


def _probe() -> Dataset:
    """A header with one element for each switch to act on."""
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.add_new(0x00100000, "UL", 8)  # a group length
    ds.add_new(0x0042FFF0, "LO", "not in the dictionary")  # an unknown public element
    ds.add_new(0x60000010, "US", 512)  # OverlayRows: in no table row, in an overlay group
    ds.add_new(0x60003000, "OW", b"\x00\x00")  # OverlayData: a wildcard row
    ds.ContentSequence = [Dataset()]  # D in the table, on a sequence
    return ds


def _kept(profile: Profile) -> set[int]:
    result = deidentify(_probe(), secret=SECRET, profile=profile)
    assert result.dataset is not None
    return {int(t) for t in result.dataset.keys()}


def test_every_vigil_switch_is_read() -> None:
    # Every key of the section but its notes must change the loaded profile when it changes.
    shipped = load_profile()
    flipped = {
        "sequence_dummy": "X",
        "remove_unknown_public": False,
        "remove_group_lengths": False,
        "remove_whole_overlay_groups": False,
        "remove_unlisted_vrs": ["PN"],
        "dummies": {"LO": "REDACTED"},
    }
    assert set(flipped) == set(_document()["vigil"]) - {"notes"}  # type: ignore[call-overload]
    for name, value in flipped.items():
        variant = _variant(**{name: value})
        assert variant != dataclasses.replace(shipped, sha256=variant.sha256), name


def test_the_shipped_switches_remove_what_their_notes_say() -> None:
    kept = _kept(load_profile())
    assert {0x00100000, 0x0042FFF0, 0x60000010, 0x60003000} & kept == set()
    assert 0x0040A730 in kept  # ContentSequence emptied (sequence_dummy Z), not removed


@pytest.mark.parametrize(
    ("switch", "value", "tag"),
    [
        ("remove_group_lengths", False, 0x00100000),
        ("remove_unknown_public", False, 0x0042FFF0),
        ("remove_whole_overlay_groups", False, 0x60000010),
    ],
)
def test_turning_a_removal_switch_off_keeps_its_element(switch: str, value: bool, tag: int) -> None:
    assert tag in _kept(_variant(**{switch: value}))


def test_overlay_data_goes_by_its_wildcard_row_whatever_the_switch() -> None:
    assert 0x60003000 not in _kept(_variant(remove_whole_overlay_groups=False))


def test_sequence_dummy_x_removes_a_d_sequence() -> None:
    assert 0x0040A730 not in _kept(_variant(sequence_dummy="X"))


@pytest.mark.parametrize(
    ("switches", "message"),
    [
        ({"sequence_dummy": "D"}, "vigil.sequence_dummy is 'D'"),
        ({"remove_group_lengths": "yes"}, "vigil.remove_group_lengths is 'yes'"),
    ],
)
def test_a_switch_value_vigil_does_not_apply_is_refused(switches: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _variant(**switches)


def test_the_offered_options_are_exactly_the_ones_vigil_implements() -> None:
    doc = copy.deepcopy(_document())
    doc["options"]["retain_uids"]["offered"] = True  # type: ignore[index]
    with pytest.raises(ConfigError, match="'retain_uids' is offered"):
        profile_from_document(doc)
    assert load_profile().offered_options == {o.value for o in ProfileOption}
