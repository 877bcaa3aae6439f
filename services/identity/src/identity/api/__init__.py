"""The HTTP API of the identity service (FastAPI routers, schemas, dependencies)."""
