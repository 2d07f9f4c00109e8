"""Worklist answers and C-FIND matching (PS3.4 C.2.2.2) with values, no sockets."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydicom import Dataset
from pydicom.sequence import Sequence

from dicomweb.types import Failure
from server.gateway.conformance import store_status
from server.gateway.worklist import WorkItem, answers, item_dataset

ITEM = WorkItem(
    accession_number="TI26112900000001",
    study_uid="2.25.1",
    patient_id="IPP-1",
    patient_name="DUPONT^Jeanne",
    patient_birth_date=date(1948, 3, 2),
    patient_sex="F",
    modality="CT",
    body_part="HEAD",
    urgency="urgent",
    procedure="CT HEAD",
    requester="Dr MARTIN",
    # 23:30 UTC is 00:30 the next day in Paris (winter time): the modality's date.
    created_at=datetime(2026, 11, 29, 23, 30, tzinfo=UTC),
)


def query(**top: object) -> Dataset:
    ds = Dataset()
    for key, value in top.items():
        if key != "step":
            setattr(ds, key, value)
    step = Dataset()
    for key, value in dict(top.get("step", {})).items():  # type: ignore[call-overload]
        setattr(step, key, value)
    ds.ScheduledProcedureStepSequence = Sequence([step])
    return ds


def test_local_date_and_time() -> None:
    [step] = item_dataset(ITEM, "CT1").ScheduledProcedureStepSequence
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == (
        "20261130",
        "003000",
    )


def test_universal_and_single_value_matching() -> None:
    assert len(answers([ITEM], query(PatientName=""), "CT1")) == 1
    assert len(answers([ITEM], query(PatientName="dupont^jeanne"), "CT1")) == 1  # PN: any case
    assert answers([ITEM], query(PatientID="IPP-2"), "CT1") == []
    assert len(answers([ITEM], query(step={"Modality": "CT"}), "CT1")) == 1
    assert answers([ITEM], query(step={"Modality": "MR"}), "CT1") == []


def test_wildcards_ranges_and_uid_lists() -> None:
    assert len(answers([ITEM], query(PatientName="DUP*"), "CT1")) == 1
    assert len(answers([ITEM], query(PatientName="D?PONT*"), "CT1")) == 1
    assert answers([ITEM], query(PatientName="MART*"), "CT1") == []
    date_range = {"ScheduledProcedureStepStartDate": "20261130-"}
    assert len(answers([ITEM], query(step=date_range), "CT1")) == 1
    date_range = {"ScheduledProcedureStepStartDate": "-20261129"}
    assert answers([ITEM], query(step=date_range), "CT1") == []
    times = {"ScheduledProcedureStepStartTime": "0000-0100"}
    assert len(answers([ITEM], query(step=times), "CT1")) == 1
    uids = query()
    uids.StudyInstanceUID = ["2.25.9", "2.25.1"]
    assert len(answers([ITEM], uids, "CT1")) == 1
    assert len(answers([ITEM], query(step={"ScheduledStationAETitle": "CT1"}), "CT1")) == 1
    assert answers([ITEM], query(step={"ScheduledStationAETitle": "MR9"}), "CT1") == []


def test_answers_carry_exactly_the_keys_asked() -> None:
    q = query(PatientName="", AccessionNumber="", OtherPatientIDs="", step={"Modality": ""})
    [answer] = answers([ITEM], q, "CT1")
    keys = {elem.keyword for elem in answer}
    assert keys == {
        "SpecificCharacterSet",
        "AccessionNumber",
        "PatientName",
        "OtherPatientIDs",
        "ScheduledProcedureStepSequence",
    }
    assert answer.OtherPatientIDs is None or answer.OtherPatientIDs == ""  # unknown: empty
    [step] = answer.ScheduledProcedureStepSequence
    assert [e.keyword for e in step] == ["Modality"] and step.Modality == "CT"
    # An empty sequence asks for every attribute of the step.
    everything = Dataset()
    everything.ScheduledProcedureStepSequence = Sequence([])
    [full] = answers([ITEM], everything, "CT1")
    assert full.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID == ITEM.accession_number


def test_store_statuses() -> None:
    assert store_status(Failure(0x0124, "")) == 0x0124
    assert store_status(Failure(0xA900, "")) == 0xA900
    assert store_status(Failure(0xA7FF, "")) == 0xA700
    assert store_status(Failure(0x0110, "")) == 0xC000


def test_ae_titles_are_checked() -> None:
    import pytest

    from server.accounts.service import AccountError, valid_ae_title
    from server.gateway.aes import host_matches

    assert valid_ae_title("  CT_URG ") == "CT_URG"
    for bad in ("", "A" * 17, "CT\\1", "CT\t1"):
        with pytest.raises(AccountError):
            valid_ae_title(bad)
    assert host_matches(None, "10.1.2.3") and host_matches("10.0.0.0/8", "10.1.2.3")
    assert not host_matches("10.0.0.0/8", "192.168.1.1")
    assert host_matches("127.0.0.1", "127.0.0.1") and host_matches("localhost", "127.0.0.1")
