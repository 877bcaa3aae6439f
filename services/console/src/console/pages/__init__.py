"""The console's pages, one module per screen family of MISP's Administration chapter."""

from fastapi import APIRouter

from console.pages import (
    auth,
    authkeys,
    contact,
    home,
    jobs,
    lists,
    logs,
    operator,
    orgs,
    registrations,
    roles,
    settings,
    totp,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (auth.router, home.router, users.router, settings.router,
                                  jobs.router, lists.router, logs.router, operator.router,
                                  orgs.router, roles.router, authkeys.router, contact.router,
                                  registrations.router, totp.router)
