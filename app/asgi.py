"""ASGI entry point for servers: configures logging in each server process, then builds the app."""

from __future__ import annotations

from fastapi import FastAPI

from app.core.logging import configure_logging
from app.main import create_app
from app.settings import get_settings


def app_factory() -> FastAPI:
    settings = get_settings()
    configure_logging(settings, "api")
    return create_app(settings)
