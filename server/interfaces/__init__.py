"""The hospitals' interfaces: HL7 v2 over MLLP in and out, the CDA report, FHIR (docs/hl7.md, docs/fhir.md)."""  # noqa: E501
