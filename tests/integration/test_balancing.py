"""Calls spread over replicas: clients balance over every address a name resolves to, and
servers close connections after MAX_CONNECTION_AGE_SECONDS so clients resolve it again
(services/common/transport.py; deploy/base's internal Services are headless)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from devtools.localrun import Proc, running
from services.common import transport

PROBE = health_pb2.HealthCheckRequest(service="probe")


@contextmanager
def health_server(status: int) -> Iterator[int]:
    """An in-process server whose health service answers `status` for "probe"; its port."""
    server = grpc.server(futures.ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    servicer.set("probe", status)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0)


def test_a_client_spreads_its_calls_over_every_address_the_name_resolves_to() -> None:
    # two replicas behind one name, told apart by their answers (pick_first would stay on one)
    with health_server(health_pb2.HealthCheckResponse.SERVING) as a, \
            health_server(health_pb2.HealthCheckResponse.NOT_SERVING) as b, \
            transport.sync_channel(f"ipv4:127.0.0.1:{a},127.0.0.1:{b}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answers = [stub.Check(PROBE, wait_for_ready=True, timeout=5).status for _ in range(20)]
    assert answers.count(health_pb2.HealthCheckResponse.SERVING) >= 5
    assert answers.count(health_pb2.HealthCheckResponse.NOT_SERVING) >= 5


def connections_made(address: str, idle_seconds: float) -> int:
    """How many times a channel became READY over two calls `idle_seconds` apart."""
    ready = []
    with transport.sync_channel(address) as channel:
        channel.subscribe(lambda state: ready.append(state) if state == grpc.ChannelConnectivity.READY else None)
        stub = health_pb2_grpc.HealthStub(channel)
        stub.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=10)
        time.sleep(idle_seconds)
        stub.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=10)
        time.sleep(0.1)  # the subscription's callbacks run on another thread
    return len(ready)


@pytest.fixture(scope="module")
def short_lived_connections(modelserver: Proc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    env = {"TF_SERVING_ADDR": modelserver.address, "MAX_CONNECTION_AGE_SECONDS": "0.5",
           "MAX_CONNECTION_AGE_GRACE_SECONDS": "0.5"}
    with running("services.classifier", env, tmp_path_factory.mktemp("aged")) as proc:
        yield proc


def test_a_server_closes_connections_after_their_age_so_clients_reconnect(
    short_lived_connections: Proc, classifier: Proc
) -> None:
    assert connections_made(short_lived_connections.address, idle_seconds=2.0) >= 2
    assert connections_made(classifier.address, idle_seconds=2.0) == 1  # default: 5 minutes
