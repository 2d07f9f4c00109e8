"""The server's side of the DICOMweb archive: access, filing, reconciliation (docs/dicomweb.md)."""
