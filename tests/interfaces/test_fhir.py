"""The FHIR API read by a real FHIR client (fhirclient) over a real socket, and its
refusals as OperationOutcome: tenancy, authentication, a bad ServiceRequest."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
from fhirclient import client as fhir_client
from fhirclient.models.diagnosticreport import DiagnosticReport
from fhirclient.models.imagingstudy import ImagingStudy
from fhirclient.models.patient import Patient
from fhirclient.models.servicerequest import ServiceRequest

from server.interfaces.fhir import CONSENT_EXTENSION
from server.testing import LiveServer
from tests.helpers import PASSWORD
from tests.reports.helpers import DRAFT, ClientFor, exam_images_complete, ok

SERVICE_REQUEST: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "status": "active",
    "intent": "order",
    "priority": "stat",
    "contained": [
        {
            "resourceType": "Patient",
            "id": "p",
            "identifier": [{"value": "IPP-FHIR-1"}],
            "name": [{"family": "MARTIN", "given": ["Paul"]}],
            "birthDate": "1960-05-04",
            "gender": "male",
        }
    ],
    "subject": {"reference": "#p"},
    "code": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]},
    "bodySite": [{"text": "HEAD"}],
    "reasonCode": [{"text": "Céphalée brutale : hémorragie méningée ?"}],
    "extension": [{"url": CONSENT_EXTENSION, "valueBoolean": True}],
}


def smart(server: LiveServer, token: str) -> Any:
    client = fhir_client.FHIRClient(settings={"app_id": "tests", "api_base": server.url + "/fhir/"})
    client.server.session.headers["Authorization"] = f"Bearer {token}"
    return client.server


async def test_fhirclient_reads_every_resource(
    client_for: ClientFor, live_server: LiveServer
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    created = await urg.post(
        "/fhir/ServiceRequest",
        json=SERVICE_REQUEST,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 201, created.text
    request = created.json()
    exam_id = request["id"]
    assert request["status"] == "active" and request["priority"] == "stat"
    base = f"/api/exams/{exam_id}"
    await ok(await rad.post(f"{base}/accept"))
    await ok(await rad.post(f"{base}/protocol", json={"text": "Scanner sans injection"}))
    await ok(await man.post(f"{base}/protocol/ack"))
    await ok(await man.post(f"{base}/images-complete"))
    await ok(await rad.put(f"{base}/report", json=DRAFT))
    await ok(await rad.post(f"{base}/report/sign", json={"password": PASSWORD}))

    server = smart(live_server, urg.headers["Authorization"].removeprefix("Bearer "))

    def read_all() -> tuple[Any, Any, Any, Any, list[Any]]:
        report = DiagnosticReport.read(exam_id, server)
        patient = Patient.read(report.subject.reference.split("/")[1], server)
        study = ImagingStudy.read(exam_id, server)
        order = ServiceRequest.read(exam_id, server)
        search = Patient.where(struct={"identifier": "IPP-FHIR-1"})
        found = list(search.perform_resources_iter(server))
        return report, patient, study, order, found

    report, patient, study, order, found = await asyncio.to_thread(read_all)
    assert report.status == "final"
    pdf = base64.b64decode(report.presentedForm[0].data)
    assert pdf.startswith(b"%PDF") and report.presentedForm[0].contentType == "application/pdf"
    assert report.code.coding[0].code == "18748-4"
    assert patient.name[0].family == "MARTIN" and patient.gender == "male"
    assert patient.identifier[0].value == "IPP-FHIR-1"
    assert study.identifier[0].value.startswith("urn:oid:")
    assert study.basedOn[0].reference == f"ServiceRequest/{exam_id}"
    assert order.status == "completed"
    assert [p.id for p in found] == [patient.id]


async def test_tenancy_and_errors_are_operation_outcomes(
    client_for: ClientFor, http: httpx.AsyncClient
) -> None:
    urg, rad, man = [await client_for(u) for u in ("urg_a", "rad", "man_a")]
    exam = await exam_images_complete(urg, rad, man)
    urg_b = await client_for("urg_b")
    for path in (f"/fhir/ServiceRequest/{exam['id']}", f"/fhir/ImagingStudy/{exam['id']}"):
        refused = await urg_b.get(path)
        assert refused.status_code == 404
        assert refused.headers["content-type"].startswith("application/fhir+json")
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert refused.json()["issue"][0]["code"] == "not-found"
    listed = (await urg_b.get("/fhir/ServiceRequest")).json()
    assert listed["resourceType"] == "Bundle" and listed["total"] == 0
    assert (await urg.get("/fhir/ServiceRequest")).json()["total"] == 1
    # No report signed yet: no DiagnosticReport.
    assert (await urg.get(f"/fhir/DiagnosticReport/{exam['id']}")).status_code == 404

    anonymous = await http.get("/fhir/Patient")
    assert anonymous.status_code == 401
    assert anonymous.json()["issue"][0]["code"] == "login"
    metadata = (await http.get("/fhir/metadata")).json()
    assert metadata["resourceType"] == "CapabilityStatement"
    assert metadata["fhirVersion"] == "4.0.1"

    # A ServiceRequest without consent creates nothing; a radiologist may not request.
    bad = {**SERVICE_REQUEST, "extension": []}
    before = (await urg.get("/fhir/ServiceRequest")).json()["total"]
    refused = await urg.post("/fhir/ServiceRequest", json=bad)
    assert refused.status_code == 422 and refused.json()["resourceType"] == "OperationOutcome"
    assert (await rad.post("/fhir/ServiceRequest", json=SERVICE_REQUEST)).status_code == 403
    assert (await urg.get("/fhir/ServiceRequest")).json()["total"] == before
