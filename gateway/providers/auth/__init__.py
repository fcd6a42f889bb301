"""Upstream credentials that are not a static API key: AWS SigV4 request signing (sigv4.py,
botocore) and Google OAuth tokens from a service account (google_token.py, google-auth, refreshed
in the background). Each imports its library on first use."""
