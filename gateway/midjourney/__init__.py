"""Midjourney's domain, below the request path: what each submit action is billed as
(actions.py). Its tasks live in the shared task engine (gateway/tasks/; tasks.py keeps the old
names). The HTTP front door is gateway/server/midjourney/; the upstream's API is
providers/adapters/midjourney.py and providers/wire/midjourney.py."""
