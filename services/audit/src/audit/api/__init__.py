"""The HTTP API of the audit service (FastAPI routers, schemas, dependencies)."""
