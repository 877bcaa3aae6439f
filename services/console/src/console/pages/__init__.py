"""The console's pages, one module per screen family of MISP's Administration chapter."""

from fastapi import APIRouter

from console.pages import auth, home, users

ROUTERS: tuple[APIRouter, ...] = (auth.router, home.router, users.router)
