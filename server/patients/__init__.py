"""Patient identities per establishment: the IPP, the INS and its status, the strict traits (docs/patients.md)."""  # noqa: E501
