"""Metadata novelty: the first study with a never-seen value is an event by itself."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core.drift.novelty import detect_novelty

D0 = date(2025, 5, 1)


def _dates(n: int) -> list[date]:
    return [D0 + timedelta(days=i) for i in range(n)]


def test_each_new_value_fires_once_on_its_first_study() -> None:
    # Prepare
    software = ["v4", "v4", "v4", "v5", "v5", "v4", "v6"]
    protocol = ["PA", "AP", "PA", "PA", "LAT", "LAT", "PA"]
    uids = [f"s{i}" for i in range(7)]

    # Execute
    report = detect_novelty(uids, _dates(7), {"software_versions": software, "protocol_name": protocol}, warmup=3)

    # Assert
    assert [(e.attribute, e.value, e.study_uid) for e in report.events] == [
        ("software_versions", "v5", "s3"),
        ("protocol_name", "LAT", "s4"),
        ("software_versions", "v6", "s6"),
    ]
    assert report.events[0].known == ("v4",) and report.events[0].study_date == D0 + timedelta(days=3)
    assert report.baseline == {"software_versions": ("v4",), "protocol_name": ("AP", "PA")}


def test_values_of_the_warm_up_are_known_and_empty_values_never_novel() -> None:
    # Execute
    report = detect_novelty(["a", "b", "c"], _dates(3), {"vendor": ["GE", "", ""]}, warmup=1)

    # Assert
    assert report.events == () and not report.warming_up


def test_a_site_with_fewer_studies_than_the_warm_up_is_warming_up() -> None:
    # Execute
    report = detect_novelty(["a", "b"], _dates(2), {"vendor": ["GE", "Philips"]}, warmup=10)

    # Assert
    assert report.warming_up and report.events == () and report.warmup == 2


def test_warm_up_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        detect_novelty([], [], {}, warmup=0)
