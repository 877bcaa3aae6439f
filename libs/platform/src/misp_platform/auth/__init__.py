"""Authentication and authorization shared by every service: the principals projection (fed by
identity's and orgs' events) and the FastAPI dependencies that authenticate MISP authkeys."""

from misp_platform.auth.dependency import (
    Admin,
    CurrentPrincipal,
    Principal,
    SiteAdmin,
    authenticate,
    require_admin,
    require_perm,
    require_site_admin,
)
from misp_platform.auth.keys import authkey_hmac, generate_authkey, mask_authkey
from misp_platform.auth.principals import PRINCIPAL_HANDLERS, PRINCIPAL_TOPICS

__all__ = [
    "PRINCIPAL_HANDLERS",
    "PRINCIPAL_TOPICS",
    "Admin",
    "CurrentPrincipal",
    "Principal",
    "SiteAdmin",
    "authenticate",
    "authkey_hmac",
    "generate_authkey",
    "mask_authkey",
    "require_admin",
    "require_perm",
    "require_site_admin",
]
