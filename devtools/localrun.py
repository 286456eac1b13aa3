"""Start musicrec servers as local subprocesses on loopback and wait until they are SERVING.

Used by the demo, the benchmarks and the tests (which run real servers, not mocks). Not shipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.numba_cache import private_cache

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    address: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_serving(address: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server at {address} exited with {proc.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"server at {address} not SERVING after {timeout} s")


def start(module: str, env: dict[str, str], tmp: Path, timeout: float = 120.0, wait: bool = True) -> Proc:
    port = free_port()
    numba = {"NUMBA_CACHE_DIR": str(private_cache(tmp / f"numba-{module.rsplit('.', 1)[-1]}-{port}"))}
    full_env = {**os.environ, "PORT": str(port), "BIND_HOST": "127.0.0.1", **numba, **env}
    log_path = tmp / f"{module.rsplit('.', 1)[-1]}-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    proc = Proc(module, f"127.0.0.1:{port}", process, log_path)
    if wait:
        # a server that requires TLS is watched on its plaintext health-only port
        health = f"127.0.0.1:{env['HEALTH_PORT']}" if env.get("HEALTH_PORT") else proc.address
        try:
            wait_serving(health, timeout, process)
        except Exception:
            proc.stop(signal.SIGKILL)
            raise RuntimeError(f"{module} did not start:\n{proc.log()[-3000:]}") from None
    return proc


@contextmanager
def running(module: str, env: dict[str, str], tmp: Path, timeout: float = 120.0) -> Iterator[Proc]:
    proc = start(module, env, tmp, timeout)
    try:
        yield proc
    finally:
        proc.stop()


@dataclass
class RedisProc:
    url: str
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_redis(tmp: Path, port: int | None = None) -> RedisProc | None:
    """A private redis-server on loopback (no persistence), or None when it is not installed."""
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    port = port or free_port()
    process = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return RedisProc(f"redis://127.0.0.1:{port}/0", port, process)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")
