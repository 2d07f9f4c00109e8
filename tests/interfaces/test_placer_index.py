"""A group's placer numbers are looked up through the indexes (establishment, placer
number) of exams and order drafts, never by reading every exam: the lookup runs for
each group of orders, and a region's exams number in the hundreds of thousands
(server/interfaces/orders.py ``Batch.read``)."""

from __future__ import annotations

from sqlalchemy import text

from server.core.db import create_engine
from server.interfaces.orders import _PLACED_AMONG
from tests.conftest import BACKEND


async def test_a_groups_placer_numbers_are_searched_by_establishment(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        looked_up = _PLACED_AMONG.params(sites=[1, 2], placers=["CMD-1", "CMD-2"])
        sql = str(looked_up.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        async with engine.connect() as conn:
            if BACKEND == "postgresql":
                # Whatever the table's size: where an index can serve, it is taken.
                await conn.execute(text("SET enable_seqscan = off"))
                plan = [row[0] for row in await conn.execute(text(f"EXPLAIN {sql}"))]
                conds = [line for line in plan if "Index Cond" in line]
                assert len(conds) == 2, plan
                assert all("establishment_id" in line for line in conds), plan
            else:
                rows = await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
                plan = [row[-1] for row in rows if "exams" in row[-1] or "drafts" in row[-1]]
                assert len(plan) == 2, plan
                assert all(
                    line.startswith("SEARCH") and "establishment_id=?" in line for line in plan
                ), plan
    finally:
        await engine.dispose()
