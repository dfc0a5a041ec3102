"""The engine's settings (the `serve` command sets them from its flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .concurrency import ConcurrencyLimits


@dataclass
class EngineSettings:
    orchestration_lease_seconds: float = 60.0
    activity_lease_seconds: float = 300.0
    max_payload_bytes: int = 4 * 1024 * 1024
    health_ping_seconds: float = 15.0
    # gRPC keepalive: a connection silent this long is pinged, and dropped if the ping goes unanswered
    # as long again (grpc_server.server_options).
    keepalive_seconds: float = 10.0
    # A worker holding work that has not been heard from this long gets no more (stalls.py).
    worker_stall_seconds: float = 10.0
    # Work items one worker may hold at once (unless it asks for fewer): the rest stay queued for
    # other workers, and a crash returns no more than this.
    worker_max_in_flight: int = 100
    # Of those, new starts' first turns at most (new_starts.py); 0: no limit of their own.
    worker_max_new_starts: int = 4
    # Under load, the longest a ready turn waits for the rest of its instance's activities (fan_in.py);
    # 0: never held.
    fan_in_hold_seconds: float = 0.1
    history_cache_size: int = 10_000
    # The cached histories' bytes at most (history_cache.py).
    history_cache_bytes: int = 64 * 1024 * 1024
    # Record lifecycle events in the outbox for the input binding (on when the component socket is).
    lifecycle_events: bool = False
    # With a shared store: how often to look for work no other engine announced (expired leases of
    # a replica that died, timers that came due on another replica).
    poll_seconds: float = 1.0
    # With a shared store: how many claimable items one sweep takes into the local queues.
    sweep_batch: int = 500
    # With a shared store: how long the leases of an engine outlive it. A live engine renews its
    # leases in the store every third of this; a worker's own time limit is the lease seconds above.
    store_lease_seconds: float = 10.0
    # How many workflow turns and activities run at once (concurrency.py).
    concurrency: ConcurrencyLimits = field(default_factory=ConcurrencyLimits)
