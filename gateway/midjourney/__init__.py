"""Midjourney's domain, below the request path: the durable task store and each worker's
Midjourney runtime (tasks.py), and what each submit action is billed as (actions.py). The HTTP
front door is gateway/server/midjourney/; the upstream's API is providers/adapters/midjourney.py
and providers/wire/midjourney.py."""
