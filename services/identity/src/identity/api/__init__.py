"""The HTTP API of the identity service (FastAPI routers on MISP's paths, and /api/v1/identity)."""

from fastapi import APIRouter


def create_routers() -> list[APIRouter]:
    from identity.api import (
        auth,
        authkeys,
        keyserver,
        operators,
        registrations,
        roles,
        totp,
        user_settings,
        users,
    )

    return [users.router, registrations.router, user_settings.router, roles.router,
            authkeys.router, auth.router, totp.router, operators.router, keyserver.router]


__all__ = ["create_routers"]
