"""Suno in New API's dialect on the task engine (gateway/tasks/): submits routed, billed per
action and stored; task reads refreshed from the suno-api upstream that runs them (docs/tasks.md).
All of it is endpoints.py; the upstream's shapes are providers/wire/suno.py."""
