"""What the credential sources of this folder raise."""

from __future__ import annotations


class CredentialsUnavailable(Exception):
    """The provider's credentials cannot be had right now (none found, or a token refresh
    failed): the relay fails the attempt with this reason, and the provider's breaker counts it."""
