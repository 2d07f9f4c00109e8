"""Small helpers the tests share."""

from __future__ import annotations

import os
from typing import Any

import httpx

from server.testing import delete_redis_prefix

PASSWORD = "correct horse battery staple"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def flush_prefix(prefix: str) -> None:
    """What FLUSHDB would do to one test's keys in the test Redis."""
    delete_redis_prefix(REDIS_URL, prefix)


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    resp = await client.post("/api/session", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["token"]
    return token


def exam_payload(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "patient": {
            "id": "IPP-000123",
            "name": "DUPONT^Jeanne",
            "birth_date": "1948-03-02",
            "sex": "F",
        },
        "modality": "CT",
        "body_part": "HEAD",
        "clinical_question": "Déficit brachio-facial gauche depuis 1 h 30 : AVC ischémique ?",
        "urgency": "emergency",
        "consent": True,
        "contraindications": "Insuffisance rénale modérée (DFG 45)",
    }
    body.update(overrides)
    return body


def dicom_patient(exam: dict[str, Any]) -> dict[str, str]:
    """The exam's patient as DICOM attributes (for instances that belong to it)."""
    patient = exam["patient"]
    return {
        "PatientID": patient["id"],
        "PatientName": patient["name"],
        "PatientBirthDate": patient["birth_date"].replace("-", ""),
        "PatientSex": patient["sex"],
    }


def of_exam(exam: dict[str, Any]) -> dict[str, str]:
    """Everything an instance filed into ``exam`` carries: its study, accession, patient."""
    return {
        "study": exam["study_instance_uid"],
        "AccessionNumber": exam["accession_number"],
        **dicom_patient(exam),
    }
