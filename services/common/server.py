"""The one gRPC server bootstrap used by every musicrec service.

It gives each server the same behaviour: asyncio gRPC, standard grpc.health.v1 (NOT_SERVING
until warm-up has finished), server reflection (so `grpcurl list/describe` works), JSON logs,
Prometheus metrics, a max message size from the environment and a graceful SIGTERM drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common.auth import Gate
from services.common.config import Setting
from services.common.interceptor import Drain, ServiceInterceptor
from services.common.jsonlog import setup_logging
from services.common.memory import reuse_freed_arrays
from services.common.receive import ReceiveLimits
from services.common.transport import MiB, bind, connection_age_options, message_limit_bytes, message_options

PORT = Setting("PORT", None, "all", "gRPC port",
               shown="featurizer 50051, classifier 50052, recommender 50053, model server 8500")
BIND_HOST = Setting("BIND_HOST", "[::]", "all", "address to bind")
SHUTDOWN_GRACE = Setting("SHUTDOWN_GRACE_SECONDS", 10.0, "all",
                         "on SIGTERM, after the drain: new calls get UNAVAILABLE and calls in flight get this long")
SHUTDOWN_DRAIN = Setting("SHUTDOWN_DRAIN_SECONDS", 0.5, "all",
                         "on SIGTERM: health goes NOT_SERVING and calls are still answered this long")
METRICS_PORT = Setting("METRICS_PORT", 0, "all", "Prometheus `/metrics` HTTP port", shown="0 (off)")
MAX_CONCURRENT_STREAMS = Setting("MAX_CONCURRENT_STREAMS", 64, "all", "HTTP/2 streams per client connection")
REFLECTION = Setting("REFLECTION", True, "all", "gRPC server reflection (`off` in the secure overlay)")
HEALTH_PORT = Setting("HEALTH_PORT", 0, "all",
                      "an extra plaintext port with grpc.health.v1 only, for Kubernetes' gRPC probes when the service "
                      "port needs TLS", shown="0 (none)")
LINGER_SECONDS = 0.2  # refusing, before the port closes: calls already on the wire get UNAVAILABLE


@dataclass
class ServiceSpec:
    """What a service plugs into the bootstrap."""

    name: str
    default_port: int
    # Registers servicers on the server; returns the full gRPC service names it added.
    register: Callable[[grpc.aio.Server], Awaitable[Sequence[str]]]
    # Runs before the server reports SERVING (e.g. numba JIT warm-up, loading indexes).
    warmup: Callable[[], Awaitable[None]] | None = None
    # Runs after the server has drained (closing clients, pools).
    shutdown: Callable[[], Awaitable[None]] | None = None
    extra_options: list[tuple[str, int]] = field(default_factory=list)
    # Methods whose one request message may hold a whole file or spectrogram (receive.py).
    large_requests: frozenset[str] = frozenset()


async def serve(spec: ServiceSpec) -> None:
    log = setup_logging(spec.name)
    port = PORT.as_int(spec.default_port)
    host = BIND_HOST.as_str()
    grace = SHUTDOWN_GRACE.as_float()
    drain_seconds = SHUTDOWN_DRAIN.as_float()
    metrics_port = METRICS_PORT.as_int()
    limit = message_limit_bytes()

    drain = Drain()
    limits = ReceiveLimits.from_env(spec.large_requests)
    server = grpc.aio.server(
        interceptors=[ServiceInterceptor(spec.name, drain, Gate.from_env(spec.name), limits)],
        options=[
            *message_options(),
            *connection_age_options(),
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS.as_int()),
            # A call not yet admitted holds one 64 KiB window, not its message: with BDP probing
            # gRPC widens every stream's window and buffers bodies nobody asked for (receive.py).
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", 64 * 1024),
            *spec.extra_options,
        ],
    )
    names = list(await spec.register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if REFLECTION.as_bool():  # off in the production overlay: no schema for strangers
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server,
        )
    bound = bind(server, f"{host}:{port}")
    if bound == 0:
        raise SystemExit(f"{spec.name}: cannot bind {host}:{port}")
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_only = await _health_port(host, health_servicer)
    await server.start()
    if metrics_port:
        start_http_server(metrics_port, addr=host.strip("[]") or "0.0.0.0")  # the same interface as gRPC
    log.info(
        "listening",
        extra={
            "port": bound,
            "services": names,
            "max_message_mb": limit // MiB,
            "request_memory_bound_mb": limits.bound_bytes // MiB,
            "metrics_port": metrics_port,
        },
    )

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    async def warm() -> None:
        if spec.warmup is not None:
            await spec.warmup()
        for name in ["", *names]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("ready", extra={"port": bound})

    warm_task = asyncio.create_task(warm())
    await stopping.wait()
    # 1. NOT_SERVING, still answering: calls sent before the signal (and whatever a balancer
    #    sends until it notices) complete normally.
    log.info("draining", extra={"drain_seconds": drain_seconds, "grace_seconds": grace})
    warm_task.cancel()
    await health_servicer.enter_graceful_shutdown()
    await asyncio.sleep(drain_seconds)
    # 2. New calls get UNAVAILABLE (clients retry elsewhere); running ones get the grace period.
    if not await drain.wait_idle(grace):
        log.warning("grace period over: cancelling calls still running", extra={"inflight": drain.inflight})
    # 3. Calls already on the wire are refused cleanly before the port closes, not cancelled.
    await asyncio.sleep(LINGER_SECONDS)
    await server.stop(0)
    if health_only is not None:
        await health_only.stop(0)
    if spec.shutdown is not None:
        await spec.shutdown()
    log.info("stopped")


async def _health_port(host: str, health_servicer: health.aio.HealthServicer) -> grpc.aio.Server | None:
    """HEALTH_PORT: a plaintext server with grpc.health.v1 only, for Kubernetes' gRPC probes
    (which cannot speak TLS) when the service port requires TLS or client certificates."""
    port = HEALTH_PORT.as_int()
    if not port:
        return None
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot bind the health port {host}:{port}")
    await server.start()
    return server


def run(spec: ServiceSpec) -> None:
    reuse_freed_arrays()  # per-request arrays stay in the heap instead of faulting in anew
    try:
        asyncio.run(serve(spec))
    except KeyboardInterrupt:
        logging.getLogger(spec.name).info("interrupted")
