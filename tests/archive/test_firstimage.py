"""The first image a room's viewer shows (server/archive/firstimage.py, docs/api.md
"The first image of a room"): which slice, named from the archive's index, and the
endpoint over the real server with the archive's own rendering of it."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pydicom
from PIL import Image

from dicomweb.samples import ct_series
from server.archive.firstimage import Slice, first_slice, slices_of
from server.testing import LiveServer
from tests.archive.test_archive import ClientFor, exam_in_acquisition, stow
from tests.helpers import of_exam


def meta(ipp: list[float] | None, iop: list[float] | None = None) -> str:
    ds: dict[str, object] = {}
    if iop is not None:
        ds["00200037"] = {"vr": "DS", "Value": iop}
    if ipp is not None:
        ds["00200032"] = {"vr": "DS", "Value": ipp}
    return json.dumps(ds)


AXIAL = [1, 0, 0, 0, 1, 0]


def test_first_slice_is_the_lowest_along_the_normal() -> None:
    rows = [
        ("a", 1, meta([0, 0, 30.0], AXIAL)),
        ("b", 2, meta([0, 0, -12.5])),
        ("c", 3, meta([0, 0, 4.0])),
    ]
    slices = slices_of(rows)
    assert [s.position for s in slices] == [30.0, -12.5, 4.0]
    assert first_slice(slices) == Slice("b", 2, -12.5)


def test_a_reversed_normal_reverses_the_order() -> None:
    # Rows to the left, columns to the back: the normal points to the feet.
    flipped = [-1, 0, 0, 0, 1, 0]
    rows = [("a", 1, meta([0, 0, 30.0], flipped)), ("b", 2, meta([0, 0, -12.5]))]
    first = first_slice(slices_of(rows))
    assert first is not None and first.sop_uid == "a"


def test_without_geometry_the_lowest_instance_number() -> None:
    rows = [("a", 7, meta(None)), ("b", 3, meta([0, 0, 1.0], AXIAL)), ("c", 5, "")]
    first = first_slice(slices_of(rows))
    assert first is not None and first.sop_uid == "b"
    assert first_slice([]) is None


async def test_the_room_names_its_first_slice_and_the_archive_renders_it(
    live_server: LiveServer, client_for: ClientFor
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    urg_b = await client_for("urg_b")
    exam = await exam_in_acquisition(urg, rad, man)
    url = f"/api/exams/{exam['id']}/first-image"
    none = await rad.get(url)
    assert none.status_code == 404 and none.json()["error"]["code"] == "no_images"

    # Instance numbers ascending from head to feet: the first slice shown (the lowest
    # along the normal, z = 2) is the last one numbered; stored in a shuffled order.
    parts = []
    for i, raw in enumerate(ct_series(5, size=64, **of_exam(exam))):
        ds = pydicom.dcmread(io.BytesIO(raw))
        ds.ImageOrientationPatient = AXIAL
        ds.ImagePositionPatient = [-16.0, -16.0, 10.0 - 2 * i]
        ds.WindowCenter, ds.WindowWidth = 40, 400
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        parts.append((ds.SOPInstanceUID, buf.getvalue()))
    expected = parts[-1][0]
    random.Random(4).shuffle(parts)
    resp = await stow(man, [p for _, p in parts])
    assert resp.status_code == 200, resp.text

    found = (await rad.get(url)).json()
    assert found["sop_instance_uid"] == expected
    assert (
        found["series_instance_uid"] == pydicom.dcmread(io.BytesIO(parts[0][1])).SeriesInstanceUID
    )
    assert found["instances"] == 5 and found["frame"] == 1
    assert found["series"]["count"] == 5 and found["series"]["modality"] == "CT"
    # The archive's rendering: a full-size grayscale PNG at the file's window.
    png = await rad.get(found["rendered_url"], headers={"Accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.mode == "L" and image.size == (64, 64)
    pixels = np.asarray(image)
    assert pixels[0, 0] == 0  # -1000 HU, below the window 40/400
    meta_resp = await rad.get(found["metadata_url"], headers={"Accept": "application/dicom+json"})
    assert meta_resp.json()[0]["00080018"]["Value"] == [expected]
    # Another establishment's urgentist does not see the exam at all.
    assert (await urg_b.get(url)).status_code == 404
