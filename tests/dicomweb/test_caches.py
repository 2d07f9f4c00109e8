"""The two in-process caches: frame locations (bounded, never across principals)
and encoded DICOM JSON values (never a bulk data URI)."""

from __future__ import annotations

import io

from pydicom import dcmread

from dicomweb.context import FrameCache, FrameSource
from dicomweb.dicomjson import json_members
from dicomweb.samples import instance, to_bytes


def source(frames: int, study: str = "1.2", series: str = "1.2.3") -> FrameSource:
    return FrameSource(study, series, "ab/x.dcm", [[[i, 1]] for i in range(frames)], "1.2.840")


def test_frame_cache_is_bounded_by_byte_ranges() -> None:
    cache = FrameCache(size=10)
    for i in range(20):
        cache.put("k", f"sop{i}", source(2))
    assert cache.weight <= 10 and list(cache.sources)[-1] == "sop19"
    assert cache.get("k", "1.2", "1.2.3", "sop19") is not None
    assert cache.get("k", "1.2", "1.2.3", "sop0") is None  # evicted, oldest first
    cache.put("k", "cine", source(50))  # heavier than the bound: kept alone
    assert list(cache.sources) == ["cine"]


def test_frame_cache_answers_only_the_key_and_path_it_was_filled_for() -> None:
    cache = FrameCache()
    cache.put(("establishment", 1), "sop", source(1))
    assert cache.get(("establishment", 1), "1.2", "1.2.3", "sop") is not None
    assert cache.get(("establishment", 2), "1.2", "1.2.3", "sop") is None
    assert cache.get(("establishment", 1), "9.9", "1.2.3", "sop") is None
    assert cache.get(("establishment", 1), "1.2", "9.9", "sop") is None
    assert cache.get(None, "1.2", "1.2.3", "sop") is None
    cache.put(None, "other", source(1))  # an Access without cache_key: nothing kept
    assert "other" not in cache.sources


def test_json_cache_never_shares_a_bulk_data_uri() -> None:
    ds = dcmread(io.BytesIO(instance("CT_small.dcm")))
    ds.add_new(0x00091010, "OB", b"\x01" * 40)  # above a 16-byte threshold: bulk data
    data = to_bytes(ds)

    def members(prefix: str) -> dict[str, str]:
        raw = dcmread(io.BytesIO(data), stop_before_pixels=True)  # raw elements
        return dict(json_members(raw, 16, lambda e: f"{prefix}/{e.tag:08X}"))

    assert "a/00091010" in members("a")["00091010"]
    assert "b/00091010" in members("b")["00091010"]
