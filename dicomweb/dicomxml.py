"""DICOM XML responses: the Native DICOM Model of PS3.19 A.1, media type
``application/dicom+xml`` (PS3.18 8.7.3.3), built from the DICOM JSON datasets
the archive already makes (PS3.18 Annex F), so both say the same.

pydicom writes DICOM JSON but not this model, so the mapping is ours; the
elements are built with the standard library's ElementTree, which escapes text
and attributes. The correspondence, per attribute:

- ``DicomAttribute`` with ``tag``, ``vr``, ``keyword`` (public tags) or
  ``privateCreator`` (private data elements, from their block's creator);
- each value in a ``Value`` with its ``number`` from 1 (an empty value of a
  multi-valued element is an empty ``Value``); person names in ``PersonName``
  with ``Alphabetic``/``Ideographic``/``Phonetic`` groups split into
  ``FamilyName``, ``GivenName``, ``MiddleName``, ``NamePrefix``, ``NameSuffix``;
- sequences in numbered ``Item`` elements; ``BulkData uri`` and
  ``InlineBinary`` as in JSON.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from pydicom.datadict import keyword_for_tag

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
DICOM_XML = "application/dicom+xml"
PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
PN_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
# Characters XML 1.0 cannot carry (C0 controls but tab, LF, CR; lone surrogates;
# U+FFFE, U+FFFF): a text value holding one gets U+FFFD in their place.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _creator(dataset: dict[str, Any], tag: str) -> str | None:
    """The Private Creator of a private data element (PS3.5 7.8.1), if any."""
    group, element = int(tag[:4], 16), int(tag[4:], 16)
    if not group % 2 or element < 0x1000:
        return None
    creator = dataset.get(f"{group:04X}{element >> 8:04X}", {}).get("Value", [None])[0]
    return str(creator) if creator is not None else None


def _person_name(parent: ET.Element, number: int, value: dict[str, str] | None) -> None:
    name = ET.SubElement(parent, "PersonName", number=str(number))
    for group in PN_GROUPS:
        text = (value or {}).get(group)
        if not text:
            continue
        node = ET.SubElement(name, group)
        for part, component in zip(PN_PARTS, text.split("^"), strict=False):
            if component:
                ET.SubElement(node, part).text = _clean(component)


def _attributes(parent: ET.Element, dataset: dict[str, Any]) -> None:
    for tag in sorted(dataset):
        attr = dataset[tag]
        vr = attr.get("vr", "UN")
        node = ET.SubElement(parent, "DicomAttribute", {"tag": tag, "vr": vr})
        keyword = keyword_for_tag(int(tag, 16))
        if keyword:
            node.set("keyword", keyword)
        creator = _creator(dataset, tag)
        if creator is not None:
            node.set("privateCreator", _clean(creator))
        if "BulkDataURI" in attr:
            ET.SubElement(node, "BulkData", uri=attr["BulkDataURI"])
        elif "InlineBinary" in attr:
            ET.SubElement(node, "InlineBinary").text = attr["InlineBinary"]
        for number, value in enumerate(attr.get("Value", ()), start=1):
            if vr == "SQ":
                item = ET.SubElement(node, "Item", number=str(number))
                _attributes(item, value or {})
            elif vr == "PN":
                _person_name(node, number, value)
            else:
                text = ET.SubElement(node, "Value", number=str(number))
                if value is not None:
                    text.text = _text(value)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _clean(str(value))


def _clean(text: str) -> str:
    return NOT_XML.sub("\ufffd", text)


def public_only(dataset: dict[str, Any]) -> dict[str, Any]:
    """The dataset without its private data elements, at every level."""
    out: dict[str, Any] = {}
    for tag, attr in dataset.items():
        if int(tag[:4], 16) % 2:
            continue
        if attr.get("vr") == "SQ" and "Value" in attr:
            attr = {**attr, "Value": [public_only(item or {}) for item in attr["Value"]]}
        out[tag] = attr
    return out


def native_model(dataset: dict[str, Any]) -> ET.Element:
    """One dataset (a DICOM JSON object) as a ``NativeDicomModel`` element."""
    root = ET.Element("NativeDicomModel", xmlns=NAMESPACE)
    _attributes(root, dataset)
    return root


def to_xml(dataset: dict[str, Any]) -> bytes:
    """One dataset as a UTF-8 XML document."""
    body = ET.tostring(native_model(dataset), encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


def multipart_xml(datasets: Iterable[dict[str, Any]], boundary: str) -> bytes:
    """``multipart/related; type="application/dicom+xml"``, one document a part:
    how PS3.18 10.6.3.3.2 gives QIDO-RS results in XML."""
    out: list[bytes] = []
    for dataset in datasets:
        out += [f"--{boundary}\r\nContent-Type: {DICOM_XML}\r\n\r\n".encode(), to_xml(dataset)]
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)
