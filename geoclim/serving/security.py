"""API keys (hashed at rest), optional HS256 JWTs and per-principal rate limiting.

**API keys.** A key reads ``<key id>.<secret>`` (see :func:`generate_key`); the key file
stores only a salted hash of the whole key, scrypt by default (``sha256`` for a cheaper,
still salted, check)::

    {"keys": [{"id": "alice", "hash": "scrypt$16384$8$1$<salt>$<digest>",
               "models": ["*"], "rate_per_minute": 600, "burst": 60}]}

The id selects the entry, so one hash is checked per request; a verified key is then
remembered in memory by its sha256 so scrypt's deliberate cost is paid once per key and
process. Clients send the key in ``X-API-Key``. Keys not yet verified are hashed at most
``failed_per_minute`` times a minute per key id, so guessing cannot turn scrypt's cost into
a denial of service (a sustained guessing attack on one id can delay that key's first use
in a fresh process; keys already verified are not affected). Concurrent first uses of one
key wait for a single check, so a burst of clients meeting a fresh process costs one hash.

**JWT.** With a shared secret configured, ``Authorization: Bearer <token>`` is accepted
too: HS256, ``exp`` and ``sub`` required, optional ``models`` claim (list of model names or
``"*"``), optional audience / issuer checks.

**Rate limiting.** A token bucket per principal (key id or JWT subject): ``burst`` requests
at once, refilled at ``rate_per_minute``; an empty bucket answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoclim.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key(key_id: str) -> str:
    """A new random API key ``<key_id>.<43 url-safe characters>``."""
    if not key_id or "." in key_id:
        raise ConfigError(f"key id {key_id!r} must be non-empty and contain no '.'")
    return f"{key_id}.{secrets.token_urlsafe(32)}"


def hash_key(key: str, method: str = "scrypt") -> str:
    """Salted hash of ``key`` for the key file (``"scrypt"`` or ``"sha256"``)."""
    salt = secrets.token_bytes(16)
    if method == "scrypt":
        digest = hashlib.scrypt(key.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    if method == "sha256":
        return f"sha256${_b64(salt)}${_b64(hashlib.sha256(salt + key.encode()).digest())}"
    raise ConfigError(f"unknown key hash method {method!r}; valid are ['scrypt', 'sha256']")


def verify_key(key: str, stored: str) -> bool:
    """Whether ``key`` matches the ``stored`` hash (constant-time comparison)."""
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(x) for x in parts[1:4])
            salt, want = _unb64(parts[4]), _unb64(parts[5])
            got = hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, dklen=len(want))
        elif parts[0] == "sha256" and len(parts) == 3:
            salt, want = _unb64(parts[1]), _unb64(parts[2])
            got = hashlib.sha256(salt + key.encode()).digest()
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        id: key id or JWT subject (the rate-limit bucket).
        models: model names it may use (``("*",)``: all).
        rate_per_minute: sustained request rate.
        burst: requests allowed at once.
        method: ``"api_key"``, ``"jwt"`` or ``"anonymous"`` (authentication disabled).

    """

    id: str
    models: tuple[str, ...] = ("*",)
    rate_per_minute: float = 600.0
    burst: int = 60
    method: str = "api_key"

    def may_use(self, model: str) -> bool:
        """Whether this principal may use ``model``."""
        return "*" in self.models or model in self.models


@dataclass
class KeyStore:
    """The API keys: id -> (hash, principal).

    Args:
        entries: ``{key id: (stored hash, principal)}``.
        failed_per_minute: hash checks allowed per key id and minute for keys not yet
            verified (a verified key is remembered and never hashed again).

    """

    entries: dict[str, tuple[str, Principal]] = field(default_factory=dict)
    failed_per_minute: float = 10.0
    _verified: dict[bytes, Principal] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _attempts: RateLimiter = field(default_factory=lambda: RateLimiter(), repr=False)
    _checking: dict[bytes, threading.Lock] = field(default_factory=dict, repr=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> KeyStore:
        """Read a key file (see the module docstring)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            entries = {}
            for item in data["keys"]:
                principal = Principal(
                    id=str(item["id"]),
                    models=tuple(item.get("models", ["*"])),
                    rate_per_minute=float(item.get("rate_per_minute", 600)),
                    burst=int(item.get("burst", 60)),
                )
                entries[principal.id] = (str(item["hash"]), principal)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ConfigError(
                f"{path}: cannot read the API key file ({err}); expected "
                '{"keys": [{"id": ..., "hash": ..., "models": [...], "rate_per_minute": ...}]}'
            ) from None
        return cls(entries)

    def add(self, key: str, principal: Principal, method: str = "scrypt") -> None:
        """Add a key (hashing it) -- for tests and :func:`write_key_file`."""
        self.entries[principal.id] = (hash_key(key, method), principal)

    def cached(self, key: str) -> Principal | None:
        """The principal of an already verified ``key`` (no hashing), else ``None``."""
        with self._lock:
            return self._verified.get(hashlib.sha256(key.encode()).digest())

    def authenticate(self, key: str) -> Principal | None:
        """The principal of ``key``, or ``None`` when the key is unknown or wrong."""
        fingerprint = hashlib.sha256(key.encode()).digest()
        with self._lock:
            if fingerprint in self._verified:
                return self._verified[fingerprint]
        key_id = key.split(".", 1)[0]
        if key_id not in self.entries or len(key) > 256:
            return None
        stored, principal = self.entries[key_id]
        with self._lock:  # one check per key at a time: a burst of first uses of a valid
            gate = self._checking.setdefault(fingerprint, threading.Lock())  # key hashes once
        with gate:
            with self._lock:
                if fingerprint in self._verified:  # verified while this call waited
                    return self._verified[fingerprint]
            # Unverified keys of a known id are hashed at most failed_per_minute times a
            # minute: guessing secrets cannot turn scrypt's cost into a denial of service.
            budget = Principal(
                f"attempts:{key_id}",
                (),
                self.failed_per_minute,
                max(1, int(self.failed_per_minute)),
            )
            ok = self._attempts.acquire(budget) <= 0 and verify_key(key, stored)
            with self._lock:
                if ok:
                    self._verified[fingerprint] = principal
                if self._checking.get(fingerprint) is gate:
                    del self._checking[fingerprint]  # waiters hold the gate; no leak per guess
        return principal if ok else None

    def to_file(self, path: str | os.PathLike) -> Path:
        """Write the key file (hashes only), readable by the owner only."""
        path = Path(path)
        data = {
            "keys": [
                {
                    "id": p.id,
                    "hash": h,
                    "models": list(p.models),
                    "rate_per_minute": p.rate_per_minute,
                    "burst": p.burst,
                }
                for h, p in self.entries.values()
            ]
        }
        path.write_text(json.dumps(data, indent=2) + "\n")
        path.chmod(0o600)
        return path


@dataclass(frozen=True)
class JWTConfig:
    """Accept ``Authorization: Bearer`` HS256 tokens signed with ``secret``."""

    secret: str
    audience: str | None = None
    issuer: str | None = None
    rate_per_minute: float = 600.0
    burst: int = 60

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid token, else ``None``."""
        import jwt

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        models = claims.get("models", ["*"])
        models = [models] if isinstance(models, str) else list(models)
        return Principal(
            str(claims["sub"]),
            tuple(str(m) for m in models),
            self.rate_per_minute,
            self.burst,
            method="jwt",
        )


class RateLimiter:
    """Token buckets keyed by principal id (thread-safe)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last time)
        self._lock = threading.Lock()

    def acquire(self, principal: Principal) -> float:
        """Take one token; return 0 when allowed, else seconds until one is available."""
        rate = principal.rate_per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(principal.id, (float(principal.burst), now))
            tokens = min(float(principal.burst), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[principal.id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[principal.id] = (tokens, now)
        return (1.0 - tokens) / rate if rate > 0 else math.inf


def check_metrics_token(token: str) -> None:
    """Raise :class:`ConfigError` unless ``token`` is long enough to guard ``/metrics``."""
    if len(token) < 16:
        raise ConfigError(
            f"metrics token of {len(token)} characters: expected at least 16 "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


class MetricsTokenMiddleware:
    """Guard one path (``/metrics``) with a static bearer token; other paths pass through.

    Prometheus sends it with ``authorization: {type: Bearer, credentials_file: ...}`` in the
    scrape config. A missing or wrong token gets 401 with ``WWW-Authenticate: Bearer``; the
    comparison takes constant time.
    """

    def __init__(self, app: Any, token: str, path: str = "/metrics"):
        check_metrics_token(token)
        self.app, self.path = app, path
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": "unauthorized",
                "message": f"{self.path} needs Authorization: Bearer <metrics token>",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
