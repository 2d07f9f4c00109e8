"""The modality gateway: DICOM C-ECHO, C-STORE and Modality Worklist for the
scanners of each establishment (docs/gateway.md)."""
