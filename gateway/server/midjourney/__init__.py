"""Midjourney, end to end on the gateway's side (the provider adapter and wire types live with
every other provider's, in gateway/providers/):

- endpoints.py: the midjourney-proxy paths (submit, fetch, list, image-seed) as envelope endpoints
- submit.py: a submit routed, forwarded through the attempt engine, stored and billed per action
- parse.py: the submit bodies; actions.py: what each submit is billed as
- tasks.py: the durable task store (SQLite) and the worker's Midjourney runtime
- runtime.py: client auth for these paths, one upstream delivery, task ownership
- poller.py: task refreshes, settling (refunds of failed tasks), the background poller
"""
