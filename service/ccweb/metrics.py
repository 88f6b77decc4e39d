"""Prometheus metrics, on a registry owned by the app (so several apps can live in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.decisions = Counter(
            "ccweb_decisions", "Credential decisions by rule and outcome.", ["rule", "outcome"],
            registry=self.registry,
        )
        self.sts_calls = Counter(
            "ccweb_sts_calls", "AssumeRole calls by result.", ["result"], registry=self.registry
        )
        self.sts_latency = Histogram(
            "ccweb_sts_latency_seconds", "AssumeRole latency.", registry=self.registry
        )
        self.policy_reloads = Counter(
            "ccweb_policy_reloads", "Policy reloads: reloaded (the policy changed) or refused (invalid file).",
            ["result"], registry=self.registry,
        )
        self.session_cache_hits = Counter(
            "ccweb_session_cache_hits", "Credentials signed from a cached STS session.", registry=self.registry
        )
