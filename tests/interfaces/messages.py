"""HL7 v2.5 messages as the hospitals' systems send them (IHE PAM national extension
for France, orders as the ANS framework fills them), built as text for the tests and
the benchmark; encoded with the character set MSH-18 names."""

from __future__ import annotations

import itertools

_ids = itertools.count(1)

INS_OID = "1.2.250.1.213.1.4.8"
# Two matricules with valid keys (97 minus the first 13 digits modulo 97).
INS_HELENE = "269037505612314"
INS_NOEL = "155077505678951"


def control_id() -> str:
    return f"MSG{next(_ids):08d}"


def msh(
    kind: str,
    control: str,
    *,
    application: str = "DPI",
    facility: str = "CHU_A",
    charset: str = "UNICODE UTF-8",
) -> str:
    return (
        f"MSH|^~\\&|{application}|{facility}|TELEIMAGERIE|TELEIMAGERIE|20261206101500||"
        f"{kind}|{control}|P|2.5|||||FRA|{charset}"
    )


def pid(
    ipp: str,
    birth_name: str = "DUPONT",
    first: str = "Hélène",
    all_first: str = "Hélène Marie",
    birth: str = "19690315",
    sex: str = "F",
    *,
    ins: str | None = INS_HELENE,
    status: str = "QUAL",
    used: str | None = "MARTIN",
    place: str = "75056",
) -> str:
    ids = f"{ipp}^^^CHU_A&1.2.250.1.999.1.1&ISO^PI"
    if ins:
        ids += f"~{ins}^^^ASIP-SANTE-INS-NIR&{INS_OID}&ISO^INS"
    names = f"{birth_name}^{first}^{all_first}^^^^L"
    if used:
        names += f"~{used}^{first}^^^^^D"
    fields = [""] * 33
    fields[0] = "PID"
    fields[1] = "1"
    fields[3] = ids
    fields[5] = names
    fields[7] = birth
    fields[8] = sex
    fields[11] = f"^^^^^^BDL^^{place}"
    fields[32] = status
    return "|".join(fields)


def adt(trigger: str, control: str, *segments: str, **header: str) -> str:
    structure = {"A28": "ADT_A05", "A31": "ADT_A05", "A40": "ADT_A39", "A47": "ADT_A30"}.get(
        trigger, "ADT_A01"
    )
    body = [msh(f"ADT^{trigger}^{structure}", control, **header), "EVN||20261206101500"]
    return "\r".join([*body, *segments]) + "\r"


def mrg(ipp: str) -> str:
    return f"MRG|{ipp}^^^CHU_A&1.2.250.1.999.1.1&ISO^PI"


def order(
    control: str,
    placer: str,
    patient: str,
    *,
    order_control: str = "NW",
    modality: str = "CT",
    procedure: str = "Scanner cérébral",
    question: str | None = "Céphalée brutale, suspicion d'hémorragie méningée",
    priority: str = "S",
    consent: str | None = "Y",
    provider: str = "",
    kind: str = "ORM^O01^ORM_O01",
    **header: str,
) -> str:
    segments = [
        msh(kind, control, **header),
        patient,
        "PV1|1|E",
        f"ORC|{order_control}|{placer}|||||^^^^^{priority}|||||{provider}",
    ]
    obr = [""] * 32
    obr[0], obr[1], obr[2] = "OBR", "1", placer
    obr[4] = f"ZCT01^{procedure}^L"
    obr[24] = modality
    obr[31] = f"^{question}" if question else ""
    segments.append("|".join(obr))
    if consent is not None:
        segments.append(f"OBX|1|CE|CONSENT||{consent}")
    return "\r".join(segments) + "\r"
