"""Téléimagerie server: the Starlette app, SQL models, auth, CLI."""
