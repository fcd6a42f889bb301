"""One adapter per provider kind: it turns an `UpstreamCall` (base.py) into an HTTP request to
its API (URL, auth headers) and sends it through the transport (../transport/); registry.py maps
the kind to its adapter. Adapters know nothing of client keys, rules, billing or formats: the
body they send was written by a codec (../codecs.py)."""
