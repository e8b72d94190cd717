"""A fresh PostgreSQL schema per test, from $VOICEPRINT_TEST_POSTGRES (skipped without it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ENV = "VOICEPRINT_TEST_POSTGRES"
SKIP_REASON = (
    f"no PostgreSQL for the store's tests: set {ENV}=postgresql://... "
    f"(export {ENV}=$(bash scripts/postgres.sh) starts one; .ci/run sets it)"
)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose connections work in a new, empty schema (dropped afterwards)."""
    url = os.environ.get(ENV)
    if not url:
        if os.environ.get("CI"):  # CI must run them: .ci/run starts PostgreSQL
            pytest.fail(SKIP_REASON, pytrace=False)
        pytest.skip(SKIP_REASON)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
