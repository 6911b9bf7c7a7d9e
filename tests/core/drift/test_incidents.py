"""The incident rule (pure): family of a stream, grouping within the window, its invariances and refusals."""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta

import pytest

from core.drift.incidents import (
    Alarm,
    IncidentFamily,
    OpenIncident,
    family_of,
    group_alarms,
    incident_summary,
    stream_title,
)
from core.drift.sitestreams import STREAMS, StreamGroup
from core.errors import BadInputError

D0 = date(2025, 5, 12)


def _day(n: int) -> date:
    return D0 + timedelta(days=n)


def _alarm(key: str, stream: str, day: int, site: str = "riverside") -> Alarm:
    return Alarm(key, site, stream, _day(day))


def _partition(alarms: list[Alarm], unresolved: list[OpenIncident], window: int = 7) -> set[frozenset[str]]:
    """The grouping as a set of groups of keys; an existing incident's group is named ``#id``."""
    g = group_alarms(alarms, unresolved, window_days=window)
    joined: dict[int, set[str]] = {}
    for key, incident_id in g.joined.items():
        joined.setdefault(incident_id, {f"#{incident_id}"}).add(key)
    return {frozenset(v) for v in joined.values()} | {frozenset(a.key for a in new) for new in g.opened}


# --- families -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_every_stream_has_the_family_of_its_group(name: str) -> None:
    assert family_of(name) == IncidentFamily(STREAMS[name].group.value)


def test_every_stream_group_is_a_family() -> None:
    assert {str(g) for g in StreamGroup} <= {str(f) for f in IncidentFamily}


def test_novelty_streams_are_metadata() -> None:
    assert family_of("novelty:software_versions") is IncidentFamily.METADATA
    assert stream_title("novelty:software_versions") == "New software version"


def test_an_unknown_stream_is_refused_naming_it() -> None:
    with pytest.raises(BadInputError, match="'bogus'"):
        family_of("bogus")


# --- the rule -------------------------------------------------------------------------------------


def test_alarms_of_one_family_within_the_window_are_one_incident() -> None:
    # Prepare: riverside's update shows on three image streams over four days, on a score stream later
    batch = [
        _alarm("spread", "intensity_spread", 1),
        _alarm("mean", "intensity_mean", 1),
        _alarm("noise", "noise", 4),
        _alarm("score", "mean_score", 6),
    ]

    # Execute
    groups = _partition(batch, [])

    # Assert
    assert groups == {frozenset({"spread", "mean", "noise"}), frozenset({"score"})}


def test_the_window_is_measured_from_the_first_alarm_so_chains_do_not_grow() -> None:
    # Prepare: alarms a week apart, each within 7 days of the previous one
    batch = [_alarm(f"a{d}", "noise", d) for d in (0, 5, 10, 15)]

    # Execute
    groups = _partition(batch, [])

    # Assert: 10 is 10 days after the first alarm (0), so it opens a new incident
    assert groups == {frozenset({"a0", "a5"}), frozenset({"a10", "a15"})}


@pytest.mark.parametrize(("gap", "joins"), [(7, True), (8, False)])
def test_an_alarm_exactly_window_days_after_the_first_still_joins(gap: int, joins: bool) -> None:
    groups = _partition([_alarm("a", "noise", 0), _alarm("b", "noise", gap)], [])
    assert (frozenset({"a", "b"}) in groups) is joins


def test_a_zero_window_groups_only_alarms_of_the_same_day() -> None:
    batch = [_alarm("a", "noise", 0), _alarm("b", "intensity_mean", 0), _alarm("c", "noise", 1)]
    assert _partition(batch, [], window=0) == {frozenset({"a", "b"}), frozenset({"c"})}


def test_a_new_alarm_joins_an_unresolved_incident_within_the_window() -> None:
    # Prepare
    existing = OpenIncident(4, "riverside", IncidentFamily.IMAGE, _day(1), _day(3))

    # Execute
    g = group_alarms([_alarm("late", "noise", 8), _alarm("after", "noise", 9)], [existing], window_days=7)

    # Assert
    assert dict(g.joined) == {"late": 4}
    assert [[a.key for a in new] for new in g.opened] == [["after"]]


@pytest.mark.parametrize(("day", "joins"), [(2, True), (1, False)])
def test_an_earlier_alarm_joins_only_while_the_incident_still_fits_the_window(day: int, joins: bool) -> None:
    # Prepare: an incident spanning days 3..9; late data bring an alarm dated before its first
    existing = OpenIncident(4, "riverside", IncidentFamily.IMAGE, _day(3), _day(9))

    # Execute
    g = group_alarms([_alarm("late", "noise", day)], [existing], window_days=7)

    # Assert: day 2 fits (2..9 spans 7 days); day 1 would make it 8, so it opens its own
    assert dict(g.joined) == ({"late": 4} if joins else {})
    assert len(g.opened) == (0 if joins else 1)


def test_sites_and_families_are_kept_apart() -> None:
    # Prepare
    existing = OpenIncident(1, "riverside", IncidentFamily.SCORE, _day(0), _day(0))
    batch = [
        _alarm("img", "noise", 1),
        _alarm("meta", "novelty:software_versions", 0),
        _alarm("other-site", "mean_score", 1, site="harbor"),
        _alarm("score", "positive_rate", 2),
    ]

    # Execute
    g = group_alarms(batch, [existing], window_days=7)

    # Assert
    assert dict(g.joined) == {"score": 1}
    assert sorted(tuple(a.key for a in new) for new in g.opened) == [("img",), ("meta",), ("other-site",)]


def test_of_two_fitting_incidents_the_nearest_first_alarm_wins() -> None:
    # Prepare
    older = OpenIncident(1, "riverside", IncidentFamily.IMAGE, _day(0), _day(2))
    newer = OpenIncident(2, "riverside", IncidentFamily.IMAGE, _day(5), _day(5))

    # Execute
    g = group_alarms([_alarm("x", "noise", 6)], [older, newer], window_days=7)

    # Assert
    assert dict(g.joined) == {"x": 2}


def test_an_empty_batch_changes_nothing() -> None:
    g = group_alarms([], [OpenIncident(1, "riverside", IncidentFamily.IMAGE, _day(0), _day(0))])
    assert dict(g.joined) == {} and g.opened == ()


# --- invariances (property-style, seeded) ---------------------------------------------------------

_STREAM_POOL = ("noise", "intensity_mean", "mean_score", "positive_rate", "specificity", "novelty:vendor")


def _random_batch(rng: random.Random, n: int) -> list[Alarm]:
    return [
        _alarm(f"k{i}", rng.choice(_STREAM_POOL), rng.randrange(0, 40), site=rng.choice(("riverside", "harbor")))
        for i in range(n)
    ]


def _random_unresolved(rng: random.Random) -> list[OpenIncident]:
    out = []
    for i in range(rng.randrange(0, 4)):
        first = rng.randrange(0, 30)
        family = rng.choice(list(IncidentFamily))
        out.append(OpenIncident(100 + i, rng.choice(("riverside", "harbor")), family, _day(first), _day(first + 3)))
    return out


@pytest.mark.parametrize("seed", range(25))
def test_the_order_of_arrival_does_not_change_the_grouping_of_a_batch(seed: int) -> None:
    # Prepare
    rng = random.Random(seed)
    batch, unresolved = _random_batch(rng, rng.randrange(1, 14)), _random_unresolved(rng)
    window = rng.choice((0, 3, 7))
    expected = _partition(batch, unresolved, window=window)

    # Execute / Assert
    for _ in range(10):
        shuffled = batch[:]
        rng.shuffle(shuffled)
        assert _partition(shuffled, unresolved, window=window) == expected


@pytest.mark.parametrize("seed", range(25))
def test_no_incident_mixes_families_or_sites_and_each_fits_its_window(seed: int) -> None:
    # Prepare
    rng = random.Random(1000 + seed)
    batch, unresolved = _random_batch(rng, rng.randrange(1, 20)), _random_unresolved(rng)
    window = rng.choice((0, 2, 7, 14))

    # Execute
    g = group_alarms(batch, unresolved, window_days=window)

    # Assert: every alarm placed once
    placed = list(g.joined) + [a.key for new in g.opened for a in new]
    assert sorted(placed) == sorted(a.key for a in batch)
    by_key = {a.key: a for a in batch}
    groups: list[tuple[set[tuple[str, IncidentFamily]], list[date]]] = []
    for inc in unresolved:
        members = [by_key[k] for k, i in g.joined.items() if i == inc.id]
        keys = {(inc.site, inc.family)} | {(a.site, a.family) for a in members}
        groups.append((keys, [inc.first_alarm_date, inc.last_alarm_date, *(a.alarm_date for a in members)]))
    for new in g.opened:
        groups.append(({(a.site, a.family) for a in new}, [a.alarm_date for a in new]))
    for keys, dates in groups:
        assert len(keys) == 1, f"an incident mixes {sorted(keys)}"
        assert (max(dates) - min(dates)).days <= max(window, 3)  # 3: the span the existing ones came with


def test_every_permutation_of_a_small_batch_gives_one_grouping() -> None:
    batch = [_alarm("a", "noise", 0), _alarm("b", "noise", 6), _alarm("c", "noise", 9), _alarm("d", "noise", 13)]
    results = {frozenset(_partition(list(p), [])) for p in itertools.permutations(batch)}
    assert len(results) == 1


# --- refusals and the summary ---------------------------------------------------------------------


@pytest.mark.parametrize("window", [-1, 1.5, True, "7"])
def test_a_bad_window_is_refused_naming_it(window: object) -> None:
    with pytest.raises(BadInputError, match=f"got {window!r}".replace("(", r"\(").replace(".", r"\.")):
        group_alarms([], [], window_days=window)  # type: ignore[arg-type]


def test_repeated_keys_are_refused_naming_them() -> None:
    with pytest.raises(BadInputError, match="'a'"):
        group_alarms([_alarm("a", "noise", 0), _alarm("a", "noise", 1)], [])


def test_the_summary_names_family_site_streams_and_dates() -> None:
    text = incident_summary(
        "riverside",
        IncidentFamily.IMAGE,
        [("noise", _day(4)), ("intensity_spread", _day(1)), ("noise", _day(5))],
        D0,
    )
    assert text == (
        "Image streams at riverside: 3 alarms from 2025-05-13 (Intensity spread, Noise estimate); "
        "estimated change from 2025-05-12"
    )
    assert incident_summary("harbor", IncidentFamily.METADATA, [("novelty:vendor", D0)], None) == (
        "Metadata novelty at harbor: 1 alarm from 2025-05-12 (New vendor)"
    )
