"""The HTTP API of the jobs service (FastAPI routers, schemas, dependencies)."""
