"""The trades worker: the only place a payment becomes a fact for downstream services.

- `state` — the per-trade state machine (pure: never goes backwards).
- `events` — CloudEvents building with deterministic ids.
- `reconcile` — the backoff schedule and expiry rules.
- `handler` — the runtime handler (notify / order created / timer).
- `metrics`, `service` (assembly), `cli` (`pooul-worker trades`).
"""

__all__: list[str] = []
