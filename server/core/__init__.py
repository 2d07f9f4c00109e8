"""The core: settings, database, models, errors, the audit chain; it imports
nothing above it (docs/architecture.md)."""
