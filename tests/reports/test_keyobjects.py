"""Key images and measurements saved into the exam's study as DICOM objects
(docs/api.md "Key images and measurements"): a Key Object Selection document and a
TID 1500 measurement report built by the server with highdicom, filed through the
archive, listed by QIDO, read back with pydicom."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pydicom
import pytest

from dicomweb.samples import instance, multipart, split_multipart
from tests.helpers import exam_payload, of_exam

ApiFor = Callable[[str], Awaitable[httpx.AsyncClient]]
KO_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
COLUMNS = ROWS = 128  # CT_small.dcm


async def exam_with_images(api_for: ApiFor, site: str = "a", count: int = 3) -> tuple[dict, list]:
    urg, rad, man = await api_for(f"urg_{site}"), await api_for("rad"), await api_for(f"man_{site}")
    exam: dict[str, Any] = (await urg.post("/api/exams", json=exam_payload())).json()
    base = f"/api/exams/{exam['id']}"
    assert (await rad.post(f"{base}/accept")).status_code == 200
    assert (await rad.post(f"{base}/protocol", json={"text": "TDM cérébrale"})).status_code == 200
    assert (await man.post(f"{base}/protocol/ack")).status_code == 200
    series = pydicom.uid.generate_uid()
    parts = [instance(series=series, InstanceNumber=i + 1, **of_exam(exam)) for i in range(count)]
    body, ctype = multipart(parts)
    resp = await man.post("/dicomweb/studies", content=body, headers={"Content-Type": ctype})
    assert resp.status_code == 200, resp.text
    return exam, [pydicom.dcmread(io.BytesIO(p), stop_before_pixels=True) for p in parts]


def body_for(images: list) -> dict[str, Any]:
    return {
        "key_images": [{"sop_instance_uid": images[1].SOPInstanceUID}],
        "measurements": [
            {
                "type": "length",
                "sop_instance_uid": images[0].SOPInstanceUID,
                "points": [[10.5, 20.5], [90.5, 20.5]],
                "length_mm": 52.5,
            },
            {
                "type": "ellipse",
                "sop_instance_uid": images[2].SOPInstanceUID,
                "points": [[44.5, 64.5], [84.5, 64.5], [64.5, 48.5], [64.5, 80.5]],
                "area_mm2": 351.2,
                "mean": 41.7,
                "sd": 12.25,
                "unit": "HU",
            },
        ],
        "description": "AVC sylvien droit",
    }


async def retrieve(client: httpx.AsyncClient, study: str, series: str, sop: str) -> Any:
    resp = await client.get(
        f"/dicomweb/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert resp.status_code == 200, resp.text
    (part,) = split_multipart(resp.content, resp.headers["content-type"])
    return pydicom.dcmread(io.BytesIO(part))


def measurements_of(sr: Any) -> dict[str, float]:
    """Every numeric content item of the SR by concept name (TID 300 inside TID 1410)."""
    out: dict[str, list[float]] = {}

    def walk(items: Any) -> None:
        for item in items:
            if item.ValueType == "NUM":
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                out.setdefault(name, []).append(float(item.MeasuredValueSequence[0].NumericValue))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return out  # type: ignore[return-value]


def referenced_sops(ds: Any) -> set[str]:
    found: set[str] = set()

    def walk(items: Any) -> None:
        for item in items:
            for ref in item.get("ReferencedSOPSequence", []):
                found.add(ref.ReferencedSOPInstanceUID)
            walk(item.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return found


async def test_saved_listed_by_qido_and_read_back(api_for: ApiFor) -> None:
    exam, images = await exam_with_images(api_for)
    rad, urg = await api_for("rad"), await api_for("urg_a")
    study = exam["study_instance_uid"]
    resp = await rad.post(f"/api/exams/{exam['id']}/key-objects", json=body_for(images))
    assert resp.status_code == 201, resp.text
    saved = resp.json()

    # QIDO lists a KO series and an SR series beside the CT (the urgentist sees them too).
    listed = (await urg.get(f"/dicomweb/studies/{study}/series")).json()
    modalities = sorted(s["00080060"]["Value"][0] for s in listed)
    assert modalities == ["CT", "KO", "SR"]

    ko = await retrieve(
        urg,
        study,
        saved["key_images"]["series_instance_uid"],
        saved["key_images"]["sop_instance_uid"],
    )
    assert ko.SOPClassUID == KO_CLASS and ko.Modality == "KO"
    assert ko.StudyInstanceUID == study and ko.PatientID == exam["patient"]["id"]
    assert ko.ConceptNameCodeSequence[0].CodeValue == "113000"  # Of Interest
    assert referenced_sops(ko) == {images[1].SOPInstanceUID}
    evidence = ko.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == images[1].SOPInstanceUID
    texts = [i.TextValue for i in ko.ContentSequence if i.ValueType == "TEXT"]
    assert texts == ["AVC sylvien droit"]

    sr = await retrieve(
        urg,
        study,
        saved["measurements"]["series_instance_uid"],
        saved["measurements"]["sop_instance_uid"],
    )
    assert sr.SOPClassUID == SR_CLASS and sr.Modality == "SR"
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"  # Imaging Measurement Report
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert measurements_of(sr) == {
        "Length": [52.5],
        "Area": [351.2],
        "Mean": [41.7],
        "Standard Deviation": [12.25],
    }
    assert referenced_sops(sr) == {images[0].SOPInstanceUID, images[2].SOPInstanceUID}
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"
    observer = [i for i in sr.ContentSequence if i.ValueType == "PNAME"]
    assert str(observer[0].PersonName).rstrip("^") == "RAD"

    # Listed for the report, in the order saved; the saving is audited.
    docs = (await urg.get(f"/api/exams/{exam['id']}/key-objects")).json()["documents"]
    assert [(d["kind"], d["sop_instance_uid"]) for d in docs] == [
        ("key_images", saved["key_images"]["sop_instance_uid"]),
        ("measurements", saved["measurements"]["sop_instance_uid"]),
    ]
    coord = await api_for("coord")
    audit = (await coord.get("/api/audit", params={"exam_id": exam["id"]})).json()
    actions = [e["action"] for e in audit["entries"]]
    assert "exam.key_objects.save" in actions


async def test_only_key_images_gives_no_sr(api_for: ApiFor) -> None:
    exam, images = await exam_with_images(api_for, count=2)
    rad = await api_for("rad")
    body = {"key_images": [{"sop_instance_uid": i.SOPInstanceUID} for i in images]}
    resp = await rad.post(f"/api/exams/{exam['id']}/key-objects", json=body)
    assert resp.status_code == 201, resp.text
    assert set(resp.json()) == {"key_images"}
    series = (await rad.get(f"/dicomweb/studies/{exam['study_instance_uid']}/series")).json()
    assert sorted(s["00080060"]["Value"][0] for s in series) == ["CT", "KO"]


async def test_wrong_role_other_radiologist_and_other_establishment_refused(
    api_for: ApiFor,
) -> None:
    exam, images = await exam_with_images(api_for)
    other, _ = await exam_with_images(api_for, site="b")
    url = f"/api/exams/{exam['id']}/key-objects"
    body = body_for(images)
    # Not radiologists: 403; another radiologist does not see an exam assigned to
    # someone else: 404, as for any exam out of scope.
    for user, status in (("urg_a", 403), ("man_a", 403), ("coord", 403), ("rad2", 404)):
        resp = await (await api_for(user)).post(url, json=body)
        assert resp.status_code == status, (user, resp.text)
    # Another establishment's users do not even see the exam, nor its documents.
    assert (await (await api_for("urg_b")).get(url)).status_code == 404
    # The radiologist's body names images of this exam: sent to the other exam's
    # route they are not its images.
    resp = await (await api_for("rad")).post(f"/api/exams/{other['id']}/key-objects", json=body)
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "unknown_instance"
    series = (
        await (await api_for("rad")).get(f"/dicomweb/studies/{exam['study_instance_uid']}/series")
    ).json()
    assert [s["00080060"]["Value"][0] for s in series] == ["CT"]  # nothing stored


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        (lambda b: b.update(key_images=[], measurements=[]), 422, "invalid_fields", "body"),
        (
            lambda b: b["key_images"][0].update(sop_instance_uid="1.2.3"),
            422,
            "unknown_instance",
            "key_images.0.sop_instance_uid",
        ),
        (
            lambda b: b["key_images"][0].update(sop_instance_uid="abc"),
            422,
            "invalid_fields",
            "key_images.0.sop_instance_uid",
        ),
        (lambda b: b["key_images"][0].update(frame=2), 422, "no_such_frame", "key_images.0.frame"),
        (
            lambda b: b["measurements"][0].update(points=[[10, 20]]),
            422,
            "invalid_fields",
            "measurements.0.length.points",
        ),
        (
            lambda b: b["measurements"][0]["points"].__setitem__(1, [COLUMNS + 5, 20]),
            422,
            "outside_image",
            "measurements.0.points",
        ),
        (
            lambda b: b["measurements"][1].update(sd=-1),
            422,
            "invalid_fields",
            "measurements.1.ellipse.sd",
        ),
        (
            lambda b: b["measurements"][1].update(type="polygon"),
            422,
            "invalid_fields",
            "measurements.1",
        ),
        (
            lambda b: b["measurements"][0].update(colour="red"),
            422,
            "invalid_fields",
            "measurements.0.length.colour",
        ),
        (lambda b: b.update(description="x" * 65), 422, "invalid_fields", "description"),
    ],
)
async def test_malformed_bodies_give_precise_errors(
    api_for: ApiFor, change: Callable[[dict], None], status: int, code: str, field: str
) -> None:
    exam, images = await exam_with_images(api_for)
    rad = await api_for("rad")
    body = body_for(images)
    change(body)
    resp = await rad.post(f"/api/exams/{exam['id']}/key-objects", json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code
    assert field in [f["field"] for f in error["fields"]], error
    series = (await rad.get(f"/dicomweb/studies/{exam['study_instance_uid']}/series")).json()
    assert [s["00080060"]["Value"][0] for s in series] == ["CT"]  # nothing half-written


async def test_not_json_refused(api_for: ApiFor) -> None:
    exam, _ = await exam_with_images(api_for, count=1)
    rad = await api_for("rad")
    resp = await rad.post(
        f"/api/exams/{exam['id']}/key-objects",
        content=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "bad_json"
