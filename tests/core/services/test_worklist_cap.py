"""Past 1,000 studies the worklist stops counting, says "1,000+", and still pages to the end."""

from __future__ import annotations

from pathlib import Path

from core.bench import store
from core.services import worklist
from core.services.permissions import Role, SignedInUser
from core.services.worklist import COUNT_CAP, WorklistFilter

READER = SignedInUser("bench-reader", Role.RADIOLOGIST)


def test_a_long_list_is_counted_to_the_cap_and_paged_past_it(tmp_path: Path) -> None:
    # Prepare: 2,000 SYNTHETIC studies, two thirds live, a few read by the reader
    sf, _ = store.build_store(tmp_path, rows=2_000)
    flt = WorklistFilter()
    everything = worklist.worklist_page(sf, READER, flt, page_size=100)

    # Execute
    deep = worklist.worklist_page(sf, READER, flt, page=45, page_size=25)
    beyond = worklist.worklist_page(sf, READER, flt, page=10_000, page_size=25)

    # Assert: the count stops at the cap and says so; paging goes on past it to the real end
    assert everything.capped and everything.total == COUNT_CAP and everything.total_text == "1,000+"
    assert len(deep.items) == 25 and deep.page == 45 and deep.pages == 47 and deep.pages_text == "47+"
    assert 0 < len(beyond.items) <= 25 and beyond.page > 45 and beyond.pages == beyond.page + 1
    assert {r.study_uid for r in deep.items}.isdisjoint(r.study_uid for r in beyond.items)


def test_a_short_list_is_counted_exactly() -> None:
    page = worklist.WorklistPage((), 7, 0, 25, 1, None)
    assert (page.total_text, page.pages_text, page.capped) == ("7", "1", False)
