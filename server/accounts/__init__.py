"""Accounts: establishments and users, logins and sessions, login throttling
(docs/design.md "Accounts")."""
