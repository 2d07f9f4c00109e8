"""HTTP API routes (``/api``)."""
