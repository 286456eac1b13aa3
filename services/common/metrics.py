"""Prometheus metrics shared by every server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPCS = Counter("musicrec_rpcs_total", "RPCs handled", ["service", "method", "code"])
LATENCY = Histogram(
    "musicrec_rpc_seconds",
    "RPC latency",
    ["service", "method"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INFLIGHT = Gauge("musicrec_rpcs_in_flight", "RPCs being handled", ["service"])
