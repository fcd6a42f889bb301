"""Midjourney tasks: what each submit is billed as, and the durable task store."""
