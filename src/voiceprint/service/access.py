"""Who may call the service, how often, and the record of what was decided.

A voiceprint is biometric data, so the service treats every endpoint that reads or
compares voices as protected once keys are configured:

* :class:`KeyRing`: API keys with a role. ``admin`` keys may do everything (enroll,
  delete, list the enrolled speakers); ``client`` keys may embed, compare, verify and
  identify. Keys are read from a file or an environment variable, never from the command
  line (where ``ps`` shows them), and only their SHA-256 digests are kept in memory.
* :class:`RateLimiter`: a token bucket per key (per client address when no keys are
  configured) against brute-force probing of verify and identify.
* :class:`AuditLog`: one JSON line per enroll, delete, verify and identify: time, key
  id (never the key), speaker, score, LLR and decision; never audio or embeddings.

Key file format, one key per line (``#`` starts a comment)::

    <key id> <admin|client> <secret>

The environment variable ``VOICEPRINT_API_KEYS`` holds the same lines (``;`` also
separates entries); ``VOICEPRINT_API_KEY`` is one admin key with id ``env``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from voiceprint.errors import VoiceprintError

log = logging.getLogger(__name__)

ROLES = ("admin", "client")
KEYS_ENV = "VOICEPRINT_API_KEYS"
KEY_ENV = "VOICEPRINT_API_KEY"
MIN_SECRET_CHARS = 16


class KeyFileError(VoiceprintError, ValueError):
    """A key file or variable that cannot be used; the message names it and the line."""


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKey:
    """One key: its public id (logged), its role, and the digest of its secret."""

    key_id: str
    role: str
    digest: bytes

    def may(self, role: str) -> bool:
        """Whether this key may call endpoints that need ``role`` (admin may do all)."""
        return self.role == "admin" or self.role == role


class KeyRing:
    """The configured keys; :meth:`authenticate` finds the key a secret belongs to."""

    def __init__(self, keys: list[ApiKey]) -> None:
        ids = [k.key_id for k in keys]
        if len(set(ids)) != len(ids):
            raise KeyFileError(f"duplicate key ids: {sorted({i for i in ids if ids.count(i) > 1})}")
        self.keys = list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    @classmethod
    def parse(cls, text: str, source: str) -> KeyRing:
        """Keys from ``key_id role secret`` lines (or ``;``-separated entries)."""
        keys = []
        entries = [e for line in text.splitlines() for e in line.split(";")]
        for number, entry in enumerate(entries, 1):
            entry = entry.split("#", 1)[0].strip()
            if not entry:
                continue
            parts = entry.split()
            if len(parts) != 3:
                raise KeyFileError(
                    f"{source}: entry {number} has {len(parts)} fields; "
                    "expected '<key id> <admin|client> <secret>'"
                )
            key_id, role, secret = parts
            if role not in ROLES:
                raise KeyFileError(
                    f"{source}: key {key_id!r} has role {role!r}; valid: {', '.join(ROLES)}"
                )
            if len(secret) < MIN_SECRET_CHARS:
                raise KeyFileError(
                    f"{source}: the secret of key {key_id!r} has {len(secret)} characters; "
                    f"use at least {MIN_SECRET_CHARS} (e.g. python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))')"
                )
            keys.append(ApiKey(key_id, role, _digest(secret)))
        if not keys:
            raise KeyFileError(f"{source} holds no keys")
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """Keys from a file; warns when others than its owner may read it."""
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise KeyFileError(f"cannot read the API key file {path}: {err.strerror}") from err
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("%s is readable by other users: chmod 600 %s", path, path)
        return cls.parse(text, str(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing | None:
        """Keys from ``$VOICEPRINT_API_KEYS`` and/or ``$VOICEPRINT_API_KEY``; None if unset."""
        environ = os.environ if environ is None else environ
        keys: list[ApiKey] = []
        if environ.get(KEYS_ENV, "").strip():
            keys += cls.parse(environ[KEYS_ENV], f"${KEYS_ENV}").keys
        if environ.get(KEY_ENV, "").strip():
            keys += cls.parse(f"env admin {environ[KEY_ENV].strip()}", f"${KEY_ENV}").keys
        return cls(keys) if keys else None

    def authenticate(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, or None; compares digests in constant time."""
        digest = _digest(secret)
        found = None
        for key in self.keys:  # no early exit: the time does not tell which key matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


@dataclass
class RateLimit:
    """At most ``requests`` per ``seconds`` per caller (a burst of ``requests``)."""

    requests: int
    seconds: float = 60.0

    def __str__(self) -> str:
        return f"{self.requests} per {self.seconds:g} s"

    @classmethod
    def parse(cls, text: str) -> RateLimit | None:
        """``"30/min"``, ``"5/s"``, ``"100/hour"`` or ``"0"`` (no limit -> None)."""
        text = text.strip().lower()
        if text in ("0", "off", "none"):
            return None
        count, _, unit = text.partition("/")
        units = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0}
        units |= {"h": 3600.0, "hour": 3600.0, "": 60.0}
        if not count.isdigit() or int(count) < 1 or unit not in units:
            raise ValueError(f"rate limit {text!r}: expected N/s, N/min, N/hour or 0")
        return cls(int(count), units[unit])


class RateLimiter:
    """Token buckets per caller id; :meth:`check` spends one token or says how long to wait.

    ``clock`` returns seconds (monotonic); tests pass their own.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last time)
        self._lock = threading.Lock()

    def check(self, caller: str) -> float | None:
        """None when ``caller`` may go on (one token spent), else seconds until it may."""
        rate = self.limit.requests / self.limit.seconds
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(caller, (float(self.limit.requests), now))
            tokens = min(float(self.limit.requests), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                return None
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / rate

    @staticmethod
    def retry_after(seconds: float) -> str:
        """The Retry-After header value: whole seconds, at least 1."""
        return str(max(1, math.ceil(seconds)))


class AuditLog:
    """Appends one JSON object per line to ``path`` (created private, mode 600)."""

    FIELDS = (
        "speaker",
        "score",
        "llr",
        "threshold",
        "decision",
        "identified",
        "gallery_size",
        "added",
        "removed",
    )

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, event: str, key_id: str, **fields: Any) -> dict[str, Any]:
        """Write one line: time (UTC), event, key id and the decision fields given.

        Only names in :attr:`FIELDS` are accepted, so
        audio or embeddings cannot end up in the log by mistake.
        """
        unknown = sorted(set(fields) - set(self.FIELDS))
        if unknown:
            raise ValueError(f"audit log fields {unknown} are not allowed; allowed: {self.FIELDS}")
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "event": event,
            "key_id": key_id,
            **{k: v for k, v in fields.items() if v is not None},
        }
        with self._lock:
            self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
            self._file.flush()
        return line

    def close(self) -> None:
        with self._lock:
            self._file.close()


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
