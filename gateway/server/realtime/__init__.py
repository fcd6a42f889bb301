"""The OpenAI Realtime API over WebSocket (`GET /v1/realtime?model=...`), relayed and billed.

connect.py admits a session before the upgrade (key, model allow-list, rules, route, limits),
upstream.py opens the provider's WebSocket through the attempt engine's key rotation,
session.py relays frames both ways, events.py reads what billing needs from `response.done`,
endpoint.py is the entry granian calls for `scope.proto == "ws"` and the HTTP side of the path.
(docs/realtime.md; docs/architecture.md, "The Realtime API")"""
