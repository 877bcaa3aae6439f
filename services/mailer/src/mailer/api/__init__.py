"""The HTTP API of the mailer service (FastAPI routers, schemas, dependencies)."""
