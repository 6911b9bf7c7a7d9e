"""Contract tests for core.store.studies, on every database flavour."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from core.errors import DicomRejectedError, UnknownSiteError, UnknownStudyError
from core.store import predictions, sites, studies
from core.store.engine import SessionFactory
from core.store.predictions import PredictionIn
from core.store.studies import InstanceIn, StudyIn

StudyBuilder = Callable[..., StudyIn]
InstanceBuilder = Callable[..., InstanceIn]


def _north(session_factory: SessionFactory, now: datetime) -> int:
    with session_factory.begin() as session:
        return sites.add_site(session, "north", now=now).id


def test_add_study_with_instance_stores_every_field(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare
    site_id = _north(session_factory, now)
    study, instance = new_study(1), new_instance(1, study=1)

    # Execute
    with session_factory.begin() as session:
        stored = studies.add_study_with_instance(session, site_id=site_id, study=study, instance=instance, now=now)
    with session_factory() as session:
        fetched = studies.get_study(session, study.study_uid)
        found = studies.find_instance(session, instance.sop_instance_uid, instance.sha256)

    # Assert
    assert stored.new_study
    assert fetched == stored.study
    assert {k: v for k, v in asdict(fetched).items() if k in asdict(study)} == asdict(study)
    assert (fetched.site_id, fetched.site_name, fetched.created_at) == (site_id, "north", now)
    assert found == stored.instance
    assert found is not None
    assert {k: v for k, v in asdict(found).items() if k in asdict(instance)} == asdict(instance)
    assert (found.study_id, found.study_uid) == (fetched.id, study.study_uid)


def test_missing_optional_header_values_round_trip(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare
    site_id = _north(session_factory, now)
    study = new_study(1, study_date=None, kvp=None, patient_age="", vendor_mapped=False)
    instance = new_instance(1, study=1, pixel_spacing_row=None, pixel_spacing_col=None, spacing_source=None)

    # Execute
    with session_factory.begin() as session:
        studies.add_study_with_instance(session, site_id=site_id, study=study, instance=instance, now=now)
    with session_factory() as session:
        fetched = studies.get_study(session, study.study_uid)
        (stored_instance,) = studies.list_instances(session, study.study_uid)

    # Assert
    assert (fetched.study_date, fetched.kvp, fetched.patient_age, fetched.vendor_mapped) == (None, None, "", False)
    assert (stored_instance.pixel_spacing_row, stored_instance.pixel_spacing_col) == (None, None)


def test_second_instance_reuses_the_study(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare
    site_id = _north(session_factory, now)
    with session_factory.begin() as session:
        first = studies.add_study_with_instance(
            session, site_id=site_id, study=new_study(1), instance=new_instance(1, study=1), now=now
        )

    # Execute: another file of the same study, with a header that differs
    with session_factory.begin() as session:
        second = studies.add_study_with_instance(
            session, site_id=site_id, study=new_study(1, kvp=90.0), instance=new_instance(2, study=1), now=now
        )
    with session_factory() as session:
        instances = studies.list_instances(session, new_study(1).study_uid)

    # Assert: one study, first header kept, two instances
    assert not second.new_study
    assert second.study == first.study
    assert second.study.kvp == 120.0
    assert [i.id for i in instances] == [first.instance.id, second.instance.id]


def test_duplicate_sop_uid_and_hash_is_rejected_by_the_constraint(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare
    site_id = _north(session_factory, now)
    with session_factory.begin() as session:
        studies.add_study_with_instance(
            session, site_id=site_id, study=new_study(1), instance=new_instance(1, study=1), now=now
        )

    # Execute / Assert
    with pytest.raises(IntegrityError, match="(?i)unique"), session_factory.begin() as session:
        studies.add_study_with_instance(
            session, site_id=site_id, study=new_study(1), instance=new_instance(1, study=1), now=now
        )
    with session_factory() as session:
        assert len(studies.list_instances(session, new_study(1).study_uid)) == 1


def test_same_sop_uid_with_other_bytes_is_another_instance(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare
    site_id = _north(session_factory, now)
    original = new_instance(1, study=1)
    changed = replace(original, sha256="b" * 64)

    # Execute
    with session_factory.begin() as session:
        for instance in (original, changed):
            studies.add_study_with_instance(session, site_id=site_id, study=new_study(1), instance=instance, now=now)
    with session_factory() as session:
        found = studies.find_instance(session, original.sop_instance_uid, "b" * 64)
        missing = studies.find_instance(session, original.sop_instance_uid, "c" * 64)

    # Assert
    assert found is not None and found.sha256 == "b" * 64
    assert missing is None


def test_study_stored_for_another_site_is_rejected(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare
    with session_factory.begin() as session:
        north = sites.add_site(session, "north", now=now)
        south = sites.add_site(session, "south", now=now)
        studies.add_study_with_instance(
            session, site_id=north.id, study=new_study(1), instance=new_instance(1, study=1), now=now
        )

    # Execute / Assert
    with pytest.raises(DicomRejectedError, match="'north', not 'south'") as caught:
        with session_factory.begin() as session:
            studies.add_study_with_instance(
                session, site_id=south.id, study=new_study(1), instance=new_instance(2, study=1), now=now
            )
    assert caught.value.path == new_instance(2, study=1).path


def test_unknown_study_is_an_error(session_factory: SessionFactory) -> None:
    # Execute / Assert
    with session_factory() as session:
        with pytest.raises(UnknownStudyError, match="9.9.9"):
            studies.get_study(session, "9.9.9")
        with pytest.raises(UnknownStudyError, match="9.9.9"):
            studies.list_instances(session, "9.9.9")


def test_list_and_count_studies_by_site_and_page(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare: studies 0..4, even ones at north, odd ones at south
    with session_factory.begin() as session:
        north = sites.add_site(session, "north", now=now)
        south = sites.add_site(session, "south", now=now)
        for i in range(5):
            site_id = north.id if i % 2 == 0 else south.id
            studies.add_study_with_instance(
                session, site_id=site_id, study=new_study(i), instance=new_instance(i, study=i), now=now
            )

    # Execute
    with session_factory() as session:
        everything = studies.list_studies(session)
        page = studies.list_studies(session, limit=2, offset=1)
        north_only = studies.list_studies(session, site="north")
        counts = (studies.count_studies(session), studies.count_studies(session, site="south"))

    # Assert
    uids = [new_study(i).study_uid for i in range(5)]
    assert [s.study_uid for s in everything] == uids
    assert [s.study_uid for s in page] == uids[1:3]
    assert [s.study_uid for s in north_only] == uids[0::2]
    assert {s.site_name for s in north_only} == {"north"}
    assert counts == (5, 2)


def test_listing_an_unknown_site_is_an_error(session_factory: SessionFactory) -> None:
    # Execute / Assert
    with session_factory() as session:
        with pytest.raises(UnknownSiteError):
            studies.list_studies(session, site="nowhere")
        with pytest.raises(UnknownSiteError):
            studies.count_studies(session, site="nowhere")


def test_instances_without_prediction(session_factory: SessionFactory, now: datetime, seeded: Any) -> None:
    # Prepare: model v1 has scored instance 0 only
    ids, mv1, mv2 = seeded.instance_ids, seeded.model_version_id, seeded.other_model_version_id
    with session_factory.begin() as session:
        predictions.add_prediction(
            session,
            PredictionIn(ids[0], mv1, "d" * 64, 0.7, True, 0.5, 12.0, "cpu"),
            now=now,
        )

    # Execute
    with session_factory() as session:
        for_v1 = studies.instances_without_prediction(session, mv1)
        for_v2 = studies.instances_without_prediction(session, mv2)
        v1_north = studies.instances_without_prediction(session, mv1, site_id=seeded.north_id)
        v2_first = studies.instances_without_prediction(session, mv2, limit=1)

    # Assert
    assert [i.id for i in for_v1] == [ids[1], ids[2]]
    assert [i.id for i in for_v2] == list(ids)
    assert [i.id for i in v1_north] == [ids[1]]
    assert [i.id for i in v2_first] == [ids[0]]


def test_add_instances_stages_what_one_at_a_time_would_in_two_inserts(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare: study 1 stored; the batch adds to it, opens study 2 twice (its first header wins)
    site_id = _north(session_factory, now)
    with session_factory.begin() as session:
        studies.add_study_with_instance(
            session, site_id=site_id, study=new_study(1), instance=new_instance(1, study=1), now=now
        )
    files = [
        (new_study(1, institution_name="ignored: study 1 is stored"), new_instance(2, study=1)),
        (new_study(2, institution_name="first"), new_instance(3, study=2)),
        (new_study(2, institution_name="second"), new_instance(4, study=2)),
    ]

    # Execute
    with session_factory.begin() as session:
        added = studies.add_instances(session, site_id=site_id, files=files, now=now)
    with session_factory() as session:
        listed = [i for s in (files[0][0], files[1][0]) for i in studies.list_instances(session, s.study_uid)]
        found = studies.instances_by_uid(session, [i.sop_instance_uid for _, i in files] + ["1.2.3.absent"])
        known = studies.stored_studies(session, [files[0][0].study_uid, files[1][0].study_uid, "1.2.3.absent"])
        institutions = [studies.get_study(session, s.study_uid).institution_name for s, _ in files[::2]]

    # Assert
    assert [a.id for a in added] == sorted(a.id for a in added) and set(added) <= set(listed)
    assert [(a.sop_instance_uid, a.study_uid) for a in added] == [(i.sop_instance_uid, s.study_uid) for s, i in files]
    assert institutions == [new_study(1).institution_name, "first"]
    assert {uid: r.id for uid, r in found.items()} == {a.sop_instance_uid: a.id for a in added}
    assert {uid: (s.site_id, s.site_name) for uid, s in known.items()} == {
        files[0][0].study_uid: (site_id, "north"),
        files[1][0].study_uid: (site_id, "north"),
    }


def test_add_instances_refuses_a_study_stored_for_another_site(
    session_factory: SessionFactory, now: datetime, new_study: StudyBuilder, new_instance: InstanceBuilder
) -> None:
    # Prepare
    north = _north(session_factory, now)
    with session_factory.begin() as session:
        south = sites.add_site(session, "south", now=now).id
        studies.add_study_with_instance(
            session, site_id=south, study=new_study(1), instance=new_instance(1, study=1), now=now
        )
    files = [(new_study(2), new_instance(2, study=2)), (new_study(1), new_instance(3, study=1))]

    # Execute / Assert
    with (
        session_factory.begin() as session,
        pytest.raises(DicomRejectedError, match="stored for site 'south', not 'north'"),
    ):
        studies.add_instances(session, site_id=north, files=files, now=now)
    with session_factory() as session:
        assert studies.instances_by_uid(session, [i.sop_instance_uid for _, i in files]) == {}
