"""The HTTP API of the orgs service (FastAPI routers, schemas, dependencies)."""
