"""What happened to each instance of a store, for the uploader (docs/dicomweb.md
"Store response").

PS3.18 10.5.3 (Table 10.5.3-3) reports stored instances in ReferencedSOPSequence
(0008,1199) and failed ones in FailedSOPSequence (0008,1198) with a FailureReason
(0008,1197). An instance kept aside for a person to file is not lost, so it is
no failure: it is referenced, without RetrieveURL (it cannot be retrieved until
filed), with WarningReason (0008,1196) B000 "Coercion of Data Elements", what
filing does to it (its patient and study identifiers become the exam's, PS3.3
C.12.1 Original Attributes Sequence keeping the received values). The response
is then 202 Accepted, as with any warning or failure (PS3.18 Table 10.5.3-2).

Each item also says in words what happened, in a private block (PS3.5 7.8.1,
creator ``TELEIMAGERIE 1``): outcome ``FILED``, ``ASIDE`` or ``REFUSED``, the
reason code, a message, the exam (filed) or queue item (aside) id, and the
number of the part of the request it came in (from 1), so that an uploader can
tell each file what became of it. Generic DICOMweb clients ignore private
elements.
"""

from __future__ import annotations

from typing import Any

from dicomweb.types import Failure, KeptAside, StoredInstance

#: PS3.4 Annex B C-STORE / PS3.18 Table 10.5.3-3 warning: Coercion of Data Elements.
COERCION = 0xB000
CREATOR = "TELEIMAGERIE 1"
OUTCOME, REASON, MESSAGE, REFERENCE, PART = (
    "00771001",
    "00771002",
    "00771003",
    "00771004",
    "00771005",
)


def _private(
    outcome: str, reason: str, message: str, reference: str | None, part: int | None
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "00770010": {"vr": "LO", "Value": [CREATOR]},
        OUTCOME: {"vr": "CS", "Value": [outcome]},
        MESSAGE: {"vr": "LT", "Value": [message]},
    }
    if part is not None:
        block[PART] = {"vr": "UL", "Value": [part]}
    if reason:
        block[REASON] = {"vr": "LO", "Value": [reason[:64]]}
    if reference:
        block[REFERENCE] = {"vr": "LO", "Value": [reference[:64]]}
    return block


def referenced_item(
    r: StoredInstance | KeptAside, base: str, part: int | None = None
) -> dict[str, Any]:
    """One ReferencedSOPSequence item."""
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [r.sop_class_uid]},
        "00081155": {"vr": "UI", "Value": [r.sop_uid]},
    }
    if isinstance(r, KeptAside):
        item["00081196"] = {"vr": "US", "Value": [COERCION]}
        item.update(_private("ASIDE", r.reason, f"kept aside: {r.message}", r.item_id, part))
        return item
    url = f"{base}/studies/{r.study_uid}/series/{r.series_uid}/instances/{r.sop_uid}"
    item["00081190"] = {"vr": "UR", "Value": [url]}
    if r.exam_id is not None:
        message = "filed into the exam" + (" (duplicate, already stored)" if r.duplicate else "")
        item.update(_private("FILED", "", message, r.exam_id, part))
    return item


def failed_item(r: Failure, part: int | None = None) -> dict[str, Any]:
    """One FailedSOPSequence item."""
    item: dict[str, Any] = {"00081197": {"vr": "US", "Value": [r.reason]}}
    if r.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [r.sop_class_uid]}
    if r.sop_uid:
        item["00081155"] = {"vr": "UI", "Value": [r.sop_uid]}
    item.update(_private("REFUSED", f"{r.reason:04X}", f"refused: {r.message}", None, part))
    return item
