"""The HTTP API of the identity service (FastAPI routers on MISP's paths, and /api/v1/identity)."""

from fastapi import APIRouter

from identity.api.deps import install_domain_errors


def create_routers() -> list[APIRouter]:
    from identity.api import auth, authkeys, operators, roles, users

    return [users.router, roles.router, authkeys.router, auth.router, operators.router]


__all__ = ["create_routers", "install_domain_errors"]
