"""The Basic Profile table: complete, consistent with the data dictionary, versioned and hashed."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from core.imaging.deid import Action, ProfileOption, load_profile, table_sha256


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
