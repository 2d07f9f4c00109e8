"""Everything Starlette and uvicorn: the app, middleware, HTTP routes (docs/architecture.md)."""
