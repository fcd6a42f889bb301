"""Provider operations: test a provider's keys (probe.py), discover its models (discover.py,
drift.py), and the live health of its keys across workers (health.py, health_merge.py).
(docs/operations.md; docs/architecture.md, "Provider operations and alerts")"""
