"""The HTTP API of the settings service (FastAPI routers, schemas, dependencies)."""
