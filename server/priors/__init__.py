"""Priors: a patient's earlier exams in our own archive (docs/api.md "Priors")."""
