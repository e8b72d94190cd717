"""schemathesis against the service's OpenAPI schema: no generated request gets a 500.

Every operation is driven with requests generated from its schema (random fields, random
bytes as audio, missing and wrong keys), on a service without keys (every endpoint open
to the generator) and on one with keys (the generator holds none).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from voiceprint.embedder import Embedder
from voiceprint.scoring import Decision
from voiceprint.service import create_app
from voiceprint.service.access import KeyRing

from .test_onnx import make_tiny_checkpoint

_FOLDER = Path(tempfile.mkdtemp(prefix="voiceprint-schema-"))
_EMBEDDER = Embedder.from_checkpoint(
    make_tiny_checkpoint(_FOLDER / "tiny.pth", decision=Decision(0.5))
)
OPEN = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(_EMBEDDER, _FOLDER / "open.db", rate_limit=None)
)
KEYED = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(
        _EMBEDDER,
        _FOLDER / "keyed.db",
        KeyRing.parse("ops admin 0123456789abcdef0123", "test"),
        audit_log=_FOLDER / "audit.jsonl",
    ),
)
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@OPEN.parametrize()
@EXAMPLES
def test_open_service_never_answers_500(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"


@KEYED.parametrize()
@EXAMPLES
def test_keyed_service_never_answers_500(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
    if case.path != "/health":  # without a valid key nothing is served (401/403, or a
        # 400/405/422 for a request malformed before the key is even looked at)
        assert 400 <= response.status_code < 500, f"{case.method} {case.path}"
