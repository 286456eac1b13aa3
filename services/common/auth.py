"""Who may call: API keys at the front door, mTLS peers or a service token inside.

- Front door (the recommender, API_KEYS_FILE set): `authorization: Bearer <key>`. The file
  holds one `name:sha256-hex` line per key (only hashes are stored; `python -m devtools.apikey`
  makes a key and its line) and is re-read when its content changes, so keys rotate without a
  restart; while it is missing or unreadable every key is refused.
  A client certificate never replaces the key: with TLS_REQUIRE_CLIENT_CERT at the front door a
  caller needs both, so revoking a key cuts its holder off.
- Internal services (SERVICE_TOKEN_FILE set, or TLS_REQUIRE_CLIENT_CERT): a peer with a
  verified client certificate that names (subject alternative name or common name) one of
  TLS_ALLOWED_PEERS, or `authorization: Bearer <service token>`. Without TLS_ALLOWED_PEERS any
  certificate the CA signed is accepted, and the log says so.
- Neither configured: open, and the log says so (the local default).
Health checks (Kubernetes probes) never need credentials; reflection can be turned off.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

import grpc

from services.common.config import Setting
from services.common.errors import ServiceError
from services.common.transport import SERVICE_TOKEN_FILE, TLS_REQUIRE_CLIENT_CERT

API_KEYS_FILE = Setting("API_KEYS_FILE", None, "recommender",
                        "`name:sha256` lines; when set, callers need `authorization: Bearer <key>`; re-read when its "
                        "content changes; missing or unreadable: every key refused")
TLS_ALLOWED_PEERS = Setting("TLS_ALLOWED_PEERS", None, "featurizer, classifier, model server",
                            "with `TLS_REQUIRE_CLIENT_CERT`: comma-separated names a client certificate must carry "
                            "(SAN or CN)", shown="unset (any certificate of the CA)")

log = logging.getLogger("auth")
RELOAD_CHECK_SECONDS = 1.0


def digest(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def unauthenticated(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, message)


def bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


class ApiKeys:
    """Hashed API keys from a file, re-read when its content changes (a digest of the bytes: an
    edit within the file system's timestamp resolution counts too). A file that disappears or
    cannot be read refuses every key until it is back, and the log says so once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._hashes: dict[str, str] = {}  # hash -> key name
        self._content: str | None = None  # digest of the file's bytes; "" while it cannot be read
        self._checked = 0.0
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            if self._content != "":
                log.error("API key file unreadable: every key is refused until it is back",
                          extra={"file": self.path, "error": exc.strerror})
            self._hashes, self._content = {}, ""
            return
        content = digest(data)
        if content == self._content:
            return
        hashes = {}
        for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, _, hashed = line.rpartition(":")
            if len(hashed) != 64 or not name:
                log.error("API key file line is not name:sha256-hex; skipped",
                          extra={"file": self.path, "line": number})
                continue
            hashes[hashed.lower()] = name
        self._hashes, self._content = hashes, content
        log.info("API keys loaded", extra={"file": self.path, "keys": len(hashes)})

    def name_of(self, key: str) -> str | None:
        now = time.monotonic()
        if now - self._checked > RELOAD_CHECK_SECONDS:
            self._checked = now
            self._load()
        wanted = digest(key)
        for hashed, name in self._hashes.items():
            if hmac.compare_digest(hashed, wanted):
                return name
        return None


@dataclass
class Gate:
    """The decision for one service, from the environment."""

    service: str
    api_keys: ApiKeys | None = None
    service_token_hash: str | None = None
    peers_need_certificates: bool = False
    allowed_peers: frozenset[str] = frozenset()  # names a client certificate must carry; empty: any

    @classmethod
    def from_env(cls, service: str) -> Gate:
        keys_file = API_KEYS_FILE.as_str()
        token = SERVICE_TOKEN_FILE.secret()
        gate = cls(
            service,
            api_keys=ApiKeys(keys_file) if keys_file else None,
            service_token_hash=digest(token) if token else None,
            peers_need_certificates=TLS_REQUIRE_CLIENT_CERT.as_bool(),
            allowed_peers=frozenset(n.strip() for n in TLS_ALLOWED_PEERS.as_str().split(",") if n.strip()),
        )
        if gate.peers_need_certificates and gate.api_keys is None and not gate.allowed_peers:
            log.warning("TLS_ALLOWED_PEERS is not set: any client certificate the CA signed is accepted")
        if gate.open:
            log.warning("no authentication configured: every caller is accepted "
                        "(set API_KEYS_FILE, SERVICE_TOKEN_FILE or TLS_REQUIRE_CLIENT_CERT)")
        return gate

    @property
    def open(self) -> bool:
        return self.api_keys is None and self.service_token_hash is None and not self.peers_need_certificates

    def check(self, context: grpc.aio.ServicerContext) -> None:
        """Raise UNAUTHENTICATED (or PERMISSION_DENIED) unless the caller shows what this service asks for."""
        if self.open:
            return
        token = bearer(context.invocation_metadata())
        if self.api_keys is not None:  # the front door: a valid key, whatever certificate came with it
            if token is not None and self.api_keys.name_of(token) is not None:
                return
            raise unauthenticated(
                f"{self.service} needs an API key: send the metadata 'authorization: Bearer <key>' "
                "(ask the operator for a key)" if token is None else
                f"the API key sent to {self.service} is not valid (revoked or mistyped); ask the operator for a key"
            )
        service_token = self.service_token_hash is not None and token is not None
        if service_token and hmac.compare_digest(digest(token), self.service_token_hash):
            return
        names = peer_names(context) if self.peers_need_certificates else []
        if names:  # the TLS layer verified the certificate against TLS_CA_FILE
            if not self.allowed_peers or self.allowed_peers.intersection(names):
                return
            raise ServiceError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{self.service} accepts calls from {', '.join(sorted(self.allowed_peers))} (TLS_ALLOWED_PEERS); "
                f"the client certificate names {', '.join(names[:4])}",
            )
        raise unauthenticated(
            f"{self.service} accepts only musicrec services: present a client certificate (mTLS) or the service token"
        )


def peer_names(context: grpc.aio.ServicerContext) -> list[str]:
    """The names in the caller's verified certificate: subject alternative names, then the common name."""
    auth = context.auth_context() or {}
    names = [*auth.get("x509_subject_alternative_name", []), *auth.get("x509_common_name", [])]
    return [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names]
