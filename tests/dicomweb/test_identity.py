"""The corrected identity on the way out, on values (dicomweb/identity.py): the
splice of the patient's elements into stored bytes, its fallbacks, and the same
answer for the instance and its DICOM JSON."""

from __future__ import annotations

import io
import json

from pydicom import Dataset, dcmread
from pydicom.uid import ImplicitVRLittleEndian

from dicomweb.header import read_header
from dicomweb.identity import Correction, correct_metadata, correct_part10
from dicomweb.samples import instance
from dicomweb.staging import metadata_json

AT = "20261206150000.000000+0000"
SURVIVOR = Correction("IPP-NEW", "DUPONT^Hélène Marie", "19690315", "F", AT)


def stored(**attrs: str) -> bytes:
    return instance(PatientID="IPP-OLD", PatientName="DUPOND^Hélène", **attrs)  # type: ignore[arg-type]


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def test_the_patient_is_replaced_and_the_originals_kept() -> None:
    before = stored(PatientSex="F")
    out = correct_part10(before, SURVIVOR)
    assert out is not None
    ds, was = read(out), read(before)
    assert (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) == (
        "IPP-NEW",
        "DUPONT^Hélène Marie",
        "19690315",
        "F",
    )
    [item] = ds.OriginalAttributesSequence
    assert item.ReasonForTheAttributeModification == "CORRECT"
    assert (item.AttributeModificationDateTime, item.ModifyingSystem) == (AT, "TELEIMAGERIE")
    old = item.ModifiedAttributesSequence[0]
    assert (old.PatientID, str(old.PatientName)) == ("IPP-OLD", "DUPOND^Hélène")
    assert "PatientSex" not in old  # unchanged, not listed
    # The other identifiers of the old PatientID go with it, kept in the item.
    assert "OtherPatientIDsSequence" in was and "OtherPatientIDsSequence" not in ds
    assert len(old.OtherPatientIDsSequence) == len(was.OtherPatientIDsSequence)
    # Every other byte is the stored one: what precedes the patient's group, and
    # everything from the pixel data on.
    pixel = before.index(b"\xe0\x7f\x10\x00")
    assert out.endswith(before[pixel:])
    start = before.index(b"\x10\x00\x10\x00")
    assert out[:start] == before[:start]
    assert ds.PixelData == was.PixelData
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "Rows", "ImagePositionPatient"):
        assert ds[keyword].value == was[keyword].value


def test_an_instance_that_holds_the_identity_is_sent_as_stored() -> None:
    out = correct_part10(stored(), SURVIVOR)
    assert out is not None
    assert correct_part10(out, SURVIVOR) is None


def test_a_second_correction_adds_an_item() -> None:
    once = correct_part10(stored(), SURVIVOR)
    assert once is not None
    again = Correction("IPP-3", "MARTIN^Noël", "19690315", "F", "20261207090000.000000+0000")
    twice = correct_part10(once, again)
    assert twice is not None
    ds = read(twice)
    assert [i.ModifiedAttributesSequence[0].PatientID for i in ds.OriginalAttributesSequence] == [
        "IPP-OLD",
        "IPP-NEW",
    ]


def test_a_new_name_only_keeps_the_identifiers() -> None:
    same_id = Correction("IPP-OLD", "DUPONT^Hélène Marie", "", "O", AT)
    out = correct_part10(stored(PatientBirthDate="", PatientSex="O"), same_id)
    assert out is not None
    ds = read(out)
    assert "OtherPatientIDsSequence" in ds
    assert list(ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].keys()) == [
        dcmread(io.BytesIO(stored()))["PatientName"].tag
    ]


def test_implicit_vr_is_spliced_in_its_own_syntax() -> None:
    ds = read(stored())
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    out = correct_part10(buf.getvalue(), SURVIVOR)
    assert out is not None
    got = read(out)
    assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert (got.PatientID, str(got.PatientName)) == ("IPP-NEW", "DUPONT^Hélène Marie")
    assert got.PixelData == ds.PixelData


def test_a_name_the_character_set_cannot_hold_declares_utf8() -> None:
    ds = read(stored())
    del ds.SpecificCharacterSet
    ds.PatientName = "DUPOND^Helene"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out = correct_part10(buf.getvalue(), SURVIVOR)
    assert out is not None
    got = read(out)
    assert got.SpecificCharacterSet == "ISO_IR 192"
    assert str(got.PatientName) == "DUPONT^Hélène Marie"
    assert got.PixelData == ds.PixelData


def test_the_metadata_says_what_the_instance_says() -> None:
    before = stored()
    header = read_header(io.BytesIO(before), len(before))
    text = metadata_json(header)[0]
    meta = json.loads(correct_metadata(text, SURVIVOR))
    from_file = read(correct_part10(before, SURVIVOR) or b"").to_json_dict()
    for tag in ("00100010", "00100020", "00100030", "00100040", "04000561"):
        assert meta[tag] == from_file[tag], tag
    assert "00101002" not in meta
    assert correct_metadata(json.dumps(meta), SURVIVOR) == json.dumps(meta)


def test_a_utf8_file_is_spliced_in_utf8() -> None:
    before = stored(SpecificCharacterSet="ISO_IR 192")
    out = correct_part10(before, SURVIVOR)
    assert out is not None
    assert "DUPONT^Hélène Marie".encode() in out
    ds = read(out)
    assert str(ds.PatientName) == "DUPONT^Hélène Marie"
    assert str(ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientName) == (
        "DUPOND^Hélène"
    )
