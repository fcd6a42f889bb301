"""Tollgate: a declarative LLM gateway."""

from .compiled import guard

guard()  # the compiled request path only where it matches the sources (compiled.py)
