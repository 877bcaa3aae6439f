"""`servers/getVersion` and `servers/getPyMISPVersion`: what PyMISP asks for first."""

from fastapi import APIRouter

from misp_platform.auth import CurrentPrincipal

# The MISP version whose administration API this platform speaks (ref §3.1, §4).
MISP_VERSION = "2.5.1"
PYMISP_RECOMMENDED_VERSION = "2.5.1"

router = APIRouter(tags=["servers"])


@router.get("/servers/getVersion")
async def get_version(principal: CurrentPrincipal) -> dict[str, object]:
    """MISP's answer, with the caller's permissions that PyMISP reads."""
    return {
        "version": MISP_VERSION,
        "pymisp_recommended_version": PYMISP_RECOMMENDED_VERSION,
        "perm_sync": principal.role.perm_sync,
        "perm_sighting": principal.role.perm_sighting,
        "perm_galaxy_editor": principal.role.perm_galaxy_editor,
        "perm_analyst_data": principal.role.perm_analyst_data,
        "request_encoding": ["gzip"],
        "filter_sightings": True,
    }


@router.get("/servers/getPyMISPVersion")
async def get_pymisp_version(_principal: CurrentPrincipal) -> dict[str, str]:
    return {"version": PYMISP_RECOMMENDED_VERSION}
