"""Structured logs: JSON lines in production, readable lines in development.

Every line carries the request id (or task id) bound in context. Bodies, query
strings, tokens and personal data are never logged; a last-line-of-defence
processor masks values under keys that look secret.
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

import structlog
import structlog.tracebacks

from app.settings import Settings

SENSITIVE_KEY = re.compile(
    r"pass(word)?|secret|token|authori[sz]ation|cookie|api[_-]?key|otp|totp|"
    r"master[_-]?key|private|credential|session[_-]?id",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
_configured = False


def logging_configured() -> bool:
    return _configured


def redact_sensitive(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key != "event" and SENSITIVE_KEY.search(key):
            event_dict[key] = REDACTED
    return event_dict


def _shared_processors(process: str) -> list[Any]:
    def add_process(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("process", process)
        return event_dict

    return [
        add_process,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_sensitive,
    ]


def configure_logging(settings: Settings, process: str) -> None:
    """Route structlog and the standard library (uvicorn, celery, ...) through one renderer."""
    global _configured
    _configured = True
    renderer: Any
    if settings.log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        # Tracebacks as data, but never with local variables: they hold secrets and
        # personal data (a password being checked, a client's record being saved).
        exc_processor: Any = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        exc_processor = structlog.processors.format_exc_info

    structlog.configure(
        processors=[
            # Drop lines below the level before any work is spent building them.
            structlog.stdlib.filter_by_level,
            *_shared_processors(process),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": _shared_processors(process),
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            exc_processor,
            renderer,
        ],
    }
    level = settings.log_level.upper()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"structured": formatter},
            "handlers": {
                "default": {
                    "class": "logging.StreamHandler",
                    "formatter": "structured",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["default"], "level": level},
            "loggers": {
                # Our own request log replaces uvicorn's, which would print query strings.
                "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
                "uvicorn.error": {"level": level},
                "sqlalchemy.engine": {"level": "WARNING"},
                "alembic": {"level": "WARNING"},
                "alembic.runtime.migration": {"level": level},
                "celery": {"level": level},
            },
        }
    )
