"""The labelling plan: proportional to the site's mix, deterministic, honest about shortfalls."""

from __future__ import annotations

import numpy as np

from core.metrics import sampling_plan


def _site(n_a: int = 60, n_b: int = 40) -> tuple[list[str], list[str]]:
    ids = [f"1.2.{i}" for i in range(n_a + n_b)]
    return ids, ["A"] * n_a + ["B"] * n_b


def test_allocation_follows_the_mix_less_what_is_labelled() -> None:
    # Prepare: 10 studies of A already labelled
    ids, strata = _site()
    labelled = [i < 10 for i in range(100)]

    # Execute
    plan = sampling_plan(ids, strata, labelled, site="north", n_required=50)

    # Assert: targets 30 A and 20 B; A has 10 already
    assert {a.stratum: a.n_selected for a in plan.allocations} == {"A": 20, "B": 20}
    assert plan.n_to_label == 40 and plan.shortfall == 0
    assert not set(plan.selected) & {ids[i] for i in range(10)}


def test_same_inputs_in_any_order_give_the_same_plan() -> None:
    # Prepare
    ids, strata = _site()
    labelled = [False] * 100
    perm = np.random.default_rng(0).permutation(100)

    # Execute
    first = sampling_plan(ids, strata, labelled, site="north", n_required=30, random_state=4)
    shuffled = sampling_plan(
        np.array(ids)[perm],
        np.array(strata)[perm],
        np.array(labelled)[perm],
        site="north",
        n_required=30,
        random_state=4,
    )

    # Assert
    assert first.selected == shuffled.selected


def test_not_enough_studies_is_a_shortfall() -> None:
    # Prepare
    ids, strata = _site(5, 5)

    # Execute
    plan = sampling_plan(ids, strata, [False] * 10, site="north", n_required=25)

    # Assert
    assert plan.n_to_label == 10 and plan.shortfall == 15


def test_unplannable_site_selects_nothing() -> None:
    # Prepare
    ids, strata = _site(5, 5)

    # Execute
    plan = sampling_plan(ids, strata, [False] * 10, site="north", n_required=None)

    # Assert
    assert plan.selected == () and plan.n_required is None and len(plan.allocations) == 2
