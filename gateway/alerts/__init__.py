"""Alerts: events (events.py) matched against the bundle's `[[alert]]` entries and delivered to
webhooks off the request path (dispatcher.py, webhook.py), every attempt logged (log.py).
(docs/operations.md; docs/architecture.md, "Provider operations and alerts")"""
