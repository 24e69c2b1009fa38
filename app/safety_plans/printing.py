"""A client's printable copy of their safety plan: one Jinja2 template, served as HTML or
turned into a PDF by WeasyPrint.

The copy is discreet on purpose: a neutral title ("My plan"), no agency name or logo, no
wording that says what kind of service made it, plain fonts. It loads nothing from
anywhere (no script, no image, no font or stylesheet by URL), in the browser (the CSP
below) and in WeasyPrint (a fetcher that refuses every URL).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.safety_plans.schemas import ContactMode, PlanContent

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE = "plan.html"
STYLESHEET = "plan.css"

# The client's own words for how contact with the other person is handled.
CONTACT_MODES: dict[ContactMode, str] = {
    "none": "No contact.",
    "written_logistics_only": "Only in writing, and only about practical arrangements.",
    "other": "As agreed below.",
}


@cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES_DIR),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, auto_reload=False)


@cache
def content_security_policy() -> str:
    """Nothing but the page's own inline stylesheet (allowed by its hash): no script, no
    image, no font, no form, not framed."""
    css = _environment().get_template(STYLESHEET).render()
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")


def render_html(content: PlanContent, *, version: int, review_date: date) -> str:
    """The plan as a self-contained HTML page (every value escaped)."""
    return _environment().get_template(TEMPLATE).render(
        plan=content, version=version, review_date=review_date, contact_modes=CONTACT_MODES)


@cache
def _no_fetching() -> Any:
    """A WeasyPrint URL fetcher that refuses every URL: the page has no external resource,
    so neither the network nor the server's files are ever read while a PDF is made."""
    from weasyprint.urls import URLFetcher

    class NoFetching(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> Any:
            raise ValueError("the printable plan loads no external resource")

    return NoFetching()


def render_pdf(html: str) -> bytes:
    """The same page as a PDF (A4, text selectable)."""
    from weasyprint import HTML  # imported on first use: it loads Pango, slow to start

    pdf = HTML(string=html, url_fetcher=_no_fetching()).write_pdf()
    if pdf is None:  # only when a target file is given
        raise RuntimeError("WeasyPrint returned no PDF")
    return pdf
