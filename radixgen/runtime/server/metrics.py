"""Prometheus metrics: engine state read at scrape time, request timings observed by the routes.

Gauges of the engine (queues, KV pool) are not pushed on every step; a collector asks the engine for
its stats when /metrics is scraped, so the engine loop pays nothing between scrapes.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "radixgen"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
TOKEN_TIME_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5)


class EngineCollector:
    """Reads `get_stats()` once per scrape and turns it into gauges and counters."""

    def __init__(self, get_stats: Callable[[], dict[str, Any]]):
        self.get_stats = get_stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.get_stats()
        gauges = {
            "num_running_reqs": ("requests being prefilled or decoded", s["num_running"]),
            "num_waiting_reqs": ("requests queued for admission", s["num_waiting"]),
            "kv_capacity_tokens": ("KV pool size in token slots", s["kv_capacity"]),
            "kv_free_tokens": ("KV slots free", s["kv_free"]),
            "kv_evictable_tokens": ("KV slots held by the prefix cache and evictable", s["kv_evictable"]),
            "kv_locked_tokens": ("KV slots in use by running requests", s["kv_locked"]),
            "kv_usage_ratio": ("share of the KV pool not free", 1 - s["kv_free"] / max(s["kv_capacity"], 1)),
            "cache_hit_rate": ("prompt tokens served from the prefix cache / prompt tokens",
                               s["cached_tokens"] / max(s["prompt_tokens"], 1)),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)
        counters = {
            "prompt_tokens": ("prompt tokens received", s["prompt_tokens"]),
            "cached_tokens": ("prompt tokens found in the prefix cache", s["cached_tokens"]),
            "generation_tokens": ("tokens generated", s["generation_tokens"]),
            "prefill_tokens_computed": ("prompt tokens run through the model", s["prefill_tokens_computed"]),
            "forwards": ("forward passes", s["forwards"]),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


class ServerMetrics:
    """The server's own registry (not the global one: tests and embedders may build several apps)."""

    def __init__(self, get_stats: Callable[[], dict[str, Any]]):
        self.registry = CollectorRegistry()
        self.registry.register(EngineCollector(get_stats))
        r = self.registry
        self.http_requests = Counter(f"{PREFIX}_http_requests", "HTTP requests by path and status",
                                     ["path", "status"], registry=r)
        self.finished = Counter(f"{PREFIX}_requests_finished", "generation requests by finish reason",
                                ["reason"], registry=r)
        self.e2e = Histogram(f"{PREFIX}_e2e_request_latency_seconds", "arrival to last token",
                             buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "arrival to first token (streams)",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram(f"{PREFIX}_time_per_output_token_seconds",
                              "mean time between output tokens after the first (streams)",
                              buckets=TOKEN_TIME_BUCKETS, registry=r)

    def observe_finished(self, meta: dict[str, Any]) -> None:
        reason = meta["finish_reason"] or {}
        self.finished.labels(reason=reason.get("type", "unknown")).inc()
        self.e2e.observe(meta["e2e_latency"])

    def observe_stream(self, ttft: float, decode_time: float, completion_tokens: int) -> None:
        self.ttft.observe(ttft)
        if completion_tokens > 1:
            self.tpot.observe(decode_time / (completion_tokens - 1))

    def render(self) -> bytes:
        """The text exposition; blocks on the engine's stats, so call it off the event loop."""
        return generate_latest(self.registry)
