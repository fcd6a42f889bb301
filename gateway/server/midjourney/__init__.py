"""Midjourney's front door (the durable task store and the action prices are gateway/midjourney/;
the provider adapter and wire types live with every other provider's, in gateway/providers/):

- endpoints.py: the midjourney-proxy paths (submit, fetch, list, image-seed) as envelope endpoints
- submit.py: a submit routed, forwarded through the attempt engine, stored and billed per action
- parse.py: the submit bodies
- runtime.py: client auth for these paths, one upstream delivery, task ownership
- poller.py: task refreshes, settling (refunds of failed tasks), the background poller
"""
