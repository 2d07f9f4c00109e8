"""What every handler needs, built once by ``create_dicomweb_app``."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from dicomweb import tables as t
from dicomweb.http import base_of
from dicomweb.identity import Corrected
from dicomweb.ingest import Ingestor
from dicomweb.storage import Storage
from dicomweb.types import Access, DicomwebConfig, DicomwebError, Principal

SERIES_ROWS = 5000  # a larger series: its other instances are located on demand


@dataclass(frozen=True)
class FrameSource:
    """Where an instance's frames are: fixed once the instance is stored."""

    study_uid: str
    series_uid: str
    path: str
    frames: list[list[list[int]]] | None
    transfer_syntax_uid: str


class FrameCache:
    """The frames hot path without SQL: instance locations by SOP Instance UID
    (stored instances never change; the archive deletes nothing), and which
    principal may see which study, for ``ttl`` seconds after the SQL query with
    the caller's ``study_filter`` said so. A principal is keyed by
    ``Access.cache_key(principal)`` when the Access has it; without it (or when it
    returns None) nothing is remembered for that caller and every request asks SQL.
    Bounded: ``size`` byte ranges in all (an instance counts one per range, so a
    long cine weighs its frames), ``size`` allowed (principal, study) pairs."""

    def __init__(self, size: int = 200_000, ttl: float = 5.0) -> None:
        self.size, self.ttl = size, ttl
        self.sources: OrderedDict[str, FrameSource] = OrderedDict()
        self.weight = 0
        self.allowed: dict[tuple[Hashable, str], float] = {}

    @staticmethod
    def _weight(source: FrameSource) -> int:
        return 1 + sum(len(f) for f in source.frames or ())

    def get(self, key: Hashable | None, study: str, series: str, sop: str) -> FrameSource | None:
        if key is None:
            return None
        source = self.sources.get(sop)
        if source is None or (source.study_uid, source.series_uid) != (study, series):
            return None
        until = self.allowed.get((key, study))
        if until is None or until < time.monotonic():
            return None
        return source

    def put(self, key: Hashable | None, sop: str, source: FrameSource) -> None:
        if key is None:
            return
        old = self.sources.pop(sop, None)
        if old is not None:
            self.weight -= self._weight(old)
        self.sources[sop] = source
        self.weight += self._weight(source)
        while self.weight > self.size and len(self.sources) > 1:
            _, dropped = self.sources.popitem(last=False)
            self.weight -= self._weight(dropped)
        if len(self.allowed) >= self.size:
            now = time.monotonic()
            self.allowed = {k: v for k, v in self.allowed.items() if v >= now}
            if len(self.allowed) >= self.size:
                self.allowed.clear()
        self.allowed[(key, source.study_uid)] = time.monotonic() + self.ttl


@dataclass
class Context:
    config: DicomwebConfig
    db: async_sessionmaker[AsyncSession]
    access: Access
    storage: Storage
    ingestor: Ingestor
    frame_cache: FrameCache = field(default_factory=FrameCache)
    # Instances handed out with a corrected patient identity (dicomweb/identity.py).
    corrected: Corrected = field(default_factory=Corrected)

    def base(self, request: Request) -> str:
        return base_of(request, self.config.public_base_url)

    async def scoped_instances(
        self, request: Request, *columns: Any, uids: Mapping[str, str] | None = None
    ) -> tuple[Principal, list[Any]]:
        """Instances under the path's study/series/instance UIDs (or ``uids``, with
        the same keys, for WADO-URI's query) the caller may see, in series then
        instance order; 404 when there are none."""
        principal = await self.access.authenticate(request)
        params = request.path_params if uids is None else uids
        stmt = self.scope(params, principal, columns)
        async with self.db() as session:
            rows = list((await session.execute(stmt)).all())
        if not rows:
            raise DicomwebError(404, "not_found", _what(params) + " not found")
        return principal, rows

    async def frame_source(self, request: Request) -> FrameSource:
        """The instance of the path for the frames route: from ``frame_cache``
        when this caller was allowed this study within its TTL, else by SQL."""
        principal = await self.access.authenticate(request)
        p = request.path_params
        cache_key = getattr(self.access, "cache_key", None)
        key = cache_key(principal) if cache_key is not None else None
        source = self.frame_cache.get(key, p["study"], p["series"], p["instance"])
        if source is not None:
            return source
        # A viewer asks for the frames of a whole series one instance after the
        # other: one query (with the caller's study_filter) locates them all.
        stmt = (
            select(
                t.instances.c.sop_uid,
                t.instances.c.path,
                t.instances.c.frames,
                t.instances.c.transfer_syntax_uid,
            )
            .select_from(t.instances_with_parents())
            .where(t.studies.c.study_uid == p["study"], t.series.c.series_uid == p["series"])
            .limit(SERIES_ROWS)
        )
        scope = self.access.study_filter(principal)
        if scope is not None:
            stmt = stmt.where(scope)
        async with self.db() as session:
            rows = {r.sop_uid: r for r in await session.execute(stmt)}
        if p["instance"] not in rows:
            raise DicomwebError(404, "not_found", _what(request.path_params) + " not found")
        wanted = None
        for sop, row in rows.items():
            source = FrameSource(
                p["study"],
                p["series"],
                row.path,
                json.loads(row.frames) if row.frames is not None else None,
                row.transfer_syntax_uid,
            )
            self.frame_cache.put(key, sop, source)
            if sop == p["instance"]:
                wanted = source
        assert wanted is not None
        return wanted

    def scope(self, p: Mapping[str, str], principal: Principal, columns: Any) -> Select[Any]:
        conds: list[ColumnElement[bool]] = [t.studies.c.study_uid == p["study"]]
        if "series" in p:
            conds.append(t.series.c.series_uid == p["series"])
        if "instance" in p:
            conds.append(t.instances.c.sop_uid == p["instance"])
        scope = self.access.study_filter(principal)
        if scope is not None:
            conds.append(scope)
        return (
            select(*columns)
            .select_from(t.instances_with_parents())
            .where(*conds)
            .order_by(
                t.series.c.series_number,
                t.series.c.id,
                t.instances.c.instance_number,
                t.instances.c.id,
            )
        )


def _what(p: Mapping[str, str]) -> str:
    if "instance" in p:
        return f"instance {p['instance']}"
    if "series" in p:
        return f"series {p['series']}"
    return f"study {p['study']}"
