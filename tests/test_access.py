"""Service access: key files and roles, rate limits, the audit log, `serve`'s refusals."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from voiceprint.cli import main
from voiceprint.service.access import (
    AuditLog,
    KeyFileError,
    KeyRing,
    RateLimit,
    RateLimiter,
    is_loopback,
)

SECRET_A = "a" * 20
SECRET_B = "b" * 20


def test_key_file_roles_and_authentication(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(f"# ops team\nops admin {SECRET_A}\n\napp client {SECRET_B}  # web\n")
    path.chmod(0o600)
    keys = KeyRing.from_file(path)
    assert len(keys) == 2
    ops, app = keys.authenticate(SECRET_A), keys.authenticate(SECRET_B)
    assert (ops.key_id, ops.role, app.key_id, app.role) == ("ops", "admin", "app", "client")
    assert ops.may("admin") and ops.may("client")
    assert app.may("client") and not app.may("admin")
    assert keys.authenticate("a" * 19) is None and keys.authenticate("") is None
    assert SECRET_A.encode() not in repr(keys.keys).encode()  # only digests are kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ops admin", "entry 1 has 2 fields"),
        (f"ops root {SECRET_A}", "role 'root'"),
        ("ops admin short", "has 5 characters"),
        (f"x admin {SECRET_A}\nx client {SECRET_B}", "duplicate key ids"),
        ("# nothing\n", "holds no keys"),
    ],
)
def test_bad_key_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        KeyRing.parse(text, "keys.txt")


def test_keys_from_the_environment() -> None:
    assert KeyRing.from_env({}) is None
    keys = KeyRing.from_env(
        {"VOICEPRINT_API_KEYS": f"a admin {SECRET_A}; b client {SECRET_B}"}
        | {"VOICEPRINT_API_KEY": "c" * 20}
    )
    assert [k.key_id for k in keys.keys] == ["a", "b", "env"]
    assert keys.authenticate("c" * 20).role == "admin"


def test_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read the API key file .*missing.txt"):
        KeyRing.from_file(tmp_path / "missing.txt")


def test_rate_limiter_buckets_refill_per_caller() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimit(2, 10.0), clock=lambda: now[0])  # 1 token per 5 s
    assert limiter.check("a") is None and limiter.check("a") is None
    assert limiter.check("a") == pytest.approx(5.0)
    assert limiter.check("b") is None  # another key has its own bucket
    now[0] = 2.5
    assert limiter.check("a") == pytest.approx(2.5)
    now[0] = 5.0
    assert limiter.check("a") is None and limiter.check("a") == pytest.approx(5.0)
    now[0] = 1000.0  # a long pause refills to the burst size, no more
    assert [limiter.check("a") is None for _ in range(3)] == [True, True, False]
    assert RateLimiter.retry_after(0.2) == "1" and RateLimiter.retry_after(4.1) == "5"


def test_rate_limit_parse() -> None:
    assert RateLimit.parse("30/min") == RateLimit(30, 60.0)
    assert RateLimit.parse("5/s") == RateLimit(5, 1.0)
    assert RateLimit.parse("100/hour") == RateLimit(100, 3600.0)
    assert RateLimit.parse("0") is None
    for bad in ("-1/min", "ten/min", "5/week", "0/min"):
        with pytest.raises(ValueError, match="rate limit"):
            RateLimit.parse(bad)


def test_audit_log_is_private_and_takes_decision_fields_only(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "logs" / "audit.jsonl")
    log.record("verify", "app", speaker="alice", score=0.5, llr=1.2, decision="ACCEPT")
    with pytest.raises(ValueError, match="not allowed"):
        log.record("verify", "app", speaker="alice", embedding=[0.1, 0.2])
    log.close()
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600
    (line,) = log.path.read_text(encoding="utf-8").splitlines()
    entry = json.loads(line)
    assert entry["event"] == "verify" and entry["key_id"] == "app" and entry["llr"] == 1.2
    assert entry["time"].endswith("+00:00")


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "example.org"]))


def test_serve_refuses_keys_on_the_command_line_and_open_public_addresses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VOICEPRINT_API_KEYS", raising=False)
    monkeypatch.delenv("VOICEPRINT_API_KEY", raising=False)
    assert main(["serve", "--api-key", SECRET_A]) == 2
    assert "--api-key is not accepted" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve voiceprints on 0.0.0.0 without API keys" in err
    assert "--insecure" in err
