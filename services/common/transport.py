"""The one place gRPC channels are made and server ports bound: plaintext or TLS, from the environment.

Every server binds through `bind` and every client dials through `channel` / `sync_channel`,
so turning on TLS (or mTLS) is configuration, not code:

    TLS_CERT_FILE, TLS_KEY_FILE   this process's certificate chain and key (PEM): the server
                                  identity, and the client identity for mTLS
    TLS_CA_FILE                   CA bundle that peers are verified against
    TLS_REQUIRE_CLIENT_CERT       servers: refuse clients without a certificate from the CA
    TLS_SERVER_NAME               clients: expected server name, when it differs from the address

Without TLS_CERT_FILE a server listens in plaintext, and says so in its log.

Spreading calls over replicas: a Kubernetes ClusterIP Service balances connections, and a gRPC
client keeps one connection for every call, so each client would load one replica only. The
internal Services are headless (one DNS record per pod), clients balance calls over every
address the name resolves to (round_robin), and servers close each connection after
MAX_CONNECTION_AGE_SECONDS (GOAWAY; calls running get MAX_CONNECTION_AGE_GRACE_SECONDS), so
clients resolve the name again and reach replicas added since.
"""

from __future__ import annotations

import logging

import grpc

from services.common.config import Setting

MiB = 1024 * 1024
MAX_MESSAGE_MB = Setting("MAX_MESSAGE_MB", 32, "all", "max gRPC message size, received and sent")
MAX_CONNECTION_AGE = Setting(
    "MAX_CONNECTION_AGE_SECONDS", 300.0, "all servers",
    "a client connection is closed (GOAWAY) after this long, so clients resolve the name again and spread their "
    "calls over replicas added since (`deploy/base`'s internal Services are headless; clients balance round-robin)")
MAX_CONNECTION_AGE_GRACE = Setting(
    "MAX_CONNECTION_AGE_GRACE_SECONDS", 150.0, "all servers",
    "calls still running on a connection being closed get this long (longer than `UPLOAD_DEADLINE_SECONDS`)")
TLS_CERT_FILE = Setting("TLS_CERT_FILE", None, "all (servers and clients)",
                        "this process's certificate chain (PEM): TLS server identity, and client identity for mTLS",
                        shown="unset: plaintext, logged")
TLS_KEY_FILE = Setting("TLS_KEY_FILE", None, "all (servers and clients)", "the key of `TLS_CERT_FILE` (PEM)")
TLS_CA_FILE = Setting(
    "TLS_CA_FILE", None, "all",
    "CA bundle peers are verified against (clients: TLS to the services; servers: client certificates)")
TLS_REQUIRE_CLIENT_CERT = Setting("TLS_REQUIRE_CLIENT_CERT", False, "all servers",
                                  "mTLS: refuse clients without a certificate from `TLS_CA_FILE`")
TLS_SERVER_NAME = Setting(
    "TLS_SERVER_NAME", None, "all clients", "expected server certificate name, when it differs from the dialled host",
    shown="the address")
SERVICE_TOKEN_FILE = Setting("SERVICE_TOKEN_FILE", None, "all",
                             "servers: accept callers sending this token (internal services); clients: send it to the "
                             "services they call")
log = logging.getLogger("transport")


def message_limit_bytes() -> int:
    return MAX_MESSAGE_MB.as_int() * MiB


def message_options() -> list[tuple[str, int]]:
    """The message size limit, the same for servers and the clients that call them."""
    limit = message_limit_bytes()
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def connection_age_options() -> list[tuple[str, int]]:
    """Servers: how long a client connection lives before the client must reconnect (and resolve
    the name again). The grace outlasts the longest call, an upload (UPLOAD_DEADLINE_SECONDS)."""
    age = MAX_CONNECTION_AGE.as_float()
    grace = MAX_CONNECTION_AGE_GRACE.as_float()
    return [("grpc.max_connection_age_ms", int(age * 1000)), ("grpc.max_connection_age_grace_ms", int(grace * 1000))]


def tls_enabled() -> bool:
    return bool(TLS_CERT_FILE.as_str())


def server_credentials() -> grpc.ServerCredentials | None:
    """TLS credentials when TLS_CERT_FILE is set (mTLS with TLS_REQUIRE_CLIENT_CERT), else None."""
    cert, key, ca = TLS_CERT_FILE.file_bytes(), TLS_KEY_FILE.file_bytes(), TLS_CA_FILE.file_bytes()
    if cert is None:
        return None
    if key is None:
        raise SystemExit("TLS_CERT_FILE is set but TLS_KEY_FILE is not: both are needed to serve TLS")
    require = TLS_REQUIRE_CLIENT_CERT.as_bool()
    if require and ca is None:
        raise SystemExit("TLS_REQUIRE_CLIENT_CERT needs TLS_CA_FILE to verify client certificates against")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=require)


def bind(server: grpc.Server | grpc.aio.Server, address: str) -> int:
    """Add the listening port (TLS or plaintext); the bound port, 0 when it failed."""
    credentials = server_credentials()
    if credentials is None:
        log.info("serving plaintext (set TLS_CERT_FILE and TLS_KEY_FILE for TLS)", extra={"address": address})
        return server.add_insecure_port(address)
    required = TLS_REQUIRE_CLIENT_CERT.as_bool()
    log.info("serving TLS", extra={"address": address, "client_cert_required": required})
    return server.add_secure_port(address, credentials)


def _client_setup() -> tuple[grpc.ChannelCredentials | None, list[tuple[str, object]]]:
    options: list[tuple[str, object]] = [*message_options(), ("grpc.lb_policy_name", "round_robin")]
    ca = TLS_CA_FILE.file_bytes()
    if ca is None and not tls_enabled():
        return None, options
    cert, key = TLS_CERT_FILE.file_bytes(), TLS_KEY_FILE.file_bytes()
    name = TLS_SERVER_NAME.as_str()
    if name:
        options.append(("grpc.ssl_target_name_override", name))
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert), options


class _ServiceToken(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    """Adds `authorization: Bearer <service token>` to every call to another musicrec service."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return details._replace(metadata=grpc.aio.Metadata(*metadata))

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def channel(address: str) -> grpc.aio.Channel:
    """An asyncio channel to another service (create it inside the running event loop); it
    carries the service token when SERVICE_TOKEN_FILE is set."""
    credentials, options = _client_setup()
    token = SERVICE_TOKEN_FILE.secret()
    interceptors = [_ServiceToken(token.decode())] if token else None
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)


def sync_channel(address: str) -> grpc.Channel:
    """A blocking channel (the demo, benchmarks, tests); unlike `channel`, it sends no service token."""
    credentials, options = _client_setup()
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)
