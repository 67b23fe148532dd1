"""Property-based fuzzing of the service from its own OpenAPI schema (schemathesis): whatever
the parameters, no answer is a server error, and every answer has a documented status,
content type and body schema."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gsm3_ops.serve import create_app
from tests.serve_site import DAYS, build_site

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# The app reads its root only when asked, so its schema exists before the site is published.
ROOT = Path(tempfile.mkdtemp(prefix="gsm3-serve-fuzz-")) / "pub"
APP = create_app(ROOT, cors_origins=["*"])
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def published_site():
    build_site(ROOT, days=DAYS[:2])
    yield ROOT
    shutil.rmtree(ROOT.parent, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_no_server_error_and_responses_conform(case) -> None:
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code < 500
