"""A hospital PACS for the tests: Debian's Orthanc, started from a config file in a temp
dir on free ports (scripts/services.sh installs it), loaded with real DICOM files
through its REST API. One per test module: start-up takes a fraction of a second,
and each test uses patients of its own."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from server.testing import free_port
from tests.browser.loop import make_ct_series

AE_TITLE = "HOSP_PACS"
OUR_AE = "TELEIMAGERIE"
BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
#: The DICOMweb user of ``Orthanc(dicomweb=True)`` (HTTP basic authentication).
WEB_USER, WEB_PASSWORD = "teleimagerie", "s3cret-pacs"


class Orthanc:
    """One Orthanc: DIMSE on ``dicom_port`` (AE ``HOSP_PACS``, called AE checked, our
    AE ``TELEIMAGERIE`` the only modality allowed to query and retrieve), REST on
    ``http_port`` for loading files.

    ``move_port``: our AE is also a C-MOVE destination, at that port of 127.0.0.1.
    ``dicomweb``: its DICOMweb plugin serves ``/dicom-web`` (``dicomweb_url``) with
    HTTP basic authentication (``WEB_USER``), the REST API too."""

    def __init__(self, root: Path, move_port: int | None = None, dicomweb: bool = False) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "hospital-pacs",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": AE_TITLE,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomModalities": {
                "teleimagerie": {
                    "AET": OUR_AE,
                    "Host": "127.0.0.1",
                    "Port": move_port or 104,
                    "AllowFind": True,
                    "AllowGet": True,
                    "AllowMove": move_port is not None,
                    "AllowStore": False,
                    "AllowEcho": True,
                }
            },
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "StorageCompression": False,
            "Plugins": [DICOMWEB_PLUGIN] if dicomweb else [],
        }
        if dicomweb:
            config["AuthenticationEnabled"] = True
            config["RegisteredUsers"] = {WEB_USER: WEB_PASSWORD}
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        path = root / "orthanc.json"
        path.write_text(json.dumps(config))
        self.log = (root / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([BINARY, str(path)], stdout=self.log, stderr=self.log)
        self._wait(self.http_port)
        self._wait(self.dicom_port)
        self.dicomweb_url = f"http://127.0.0.1:{self.http_port}/dicom-web"
        auth = httpx.BasicAuth(WEB_USER, WEB_PASSWORD) if dicomweb else None
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}", timeout=30, auth=auth
        )

    def _wait(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Orthanc exited at start-up (see its log)")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"Orthanc does not listen on {port}")

    def load(self, files: Sequence[Path | bytes]) -> None:
        for item in files:
            data = item.read_bytes() if isinstance(item, Path) else item
            resp = self.http.post("/instances", content=data)
            assert resp.status_code == 200, resp.text

    def close(self) -> None:
        self.http.close()
        # Its storage is a temp dir thrown away after: no need for its slow clean stop.
        self.proc.kill()
        self.proc.wait(20)
        self.log.close()


@pytest.fixture(scope="module", name="orthanc")
def orthanc_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    yield from running_orthanc(tmp_path_factory)


def running_orthanc(
    tmp_path_factory: pytest.TempPathFactory, move_port: int | None = None, dicomweb: bool = False
) -> Iterator[Orthanc]:
    """An Orthanc for a module's fixture, closed after it."""
    if not Path(BINARY).exists():
        pytest.fail(
            f"{BINARY} is missing: run `bash scripts/services.sh` (apt-get install orthanc)"
        )
    if dicomweb and not Path(DICOMWEB_PLUGIN).exists():
        pytest.fail(
            f"{DICOMWEB_PLUGIN} is missing: run `bash scripts/services.sh` "
            "(apt-get install orthanc-dicomweb)"
        )
    pacs = Orthanc(tmp_path_factory.mktemp("orthanc"), move_port=move_port, dicomweb=dicomweb)
    try:
        yield pacs
    finally:
        pacs.close()


def patient_attrs(patient: dict[str, str], **study: str) -> dict[str, str]:
    """A patient of the request form (``tests.helpers.exam_payload``) as DICOM
    attributes, and the study's own (StudyDate, StudyDescription...)."""
    return {
        "PatientID": patient["id"],
        "PatientName": patient["name"],
        "PatientBirthDate": patient["birth_date"].replace("-", ""),
        "PatientSex": patient["sex"],
        **study,
    }


def ct_study(folder: Path, attrs: dict[str, str], count: int = 3) -> tuple[str, list[Path]]:
    """A CT study of ``count`` slices made from pydicom's CT_small.dcm (a real CT file),
    for the patient and study attributes given."""
    study_uid = generate_uid()
    accession = "H" + study_uid[-9:]
    return study_uid, make_ct_series(folder, study_uid, accession, count, patient=attrs)


def one_file(name: str, attrs: dict[str, str]) -> tuple[str, bytes]:
    """One of pydicom's test files as a study of its own for this patient."""
    from io import BytesIO

    ds = pydicom.dcmread(get_testdata_file(name))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return str(ds.StudyInstanceUID), buf.getvalue()
