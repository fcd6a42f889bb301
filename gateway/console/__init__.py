"""The web console at `/console/`: operators see the gateway, key holders their own usage.

Pages are rendered on the server (Jinja2, autoescaped) from the live snapshot and from fixed,
parameterised SQL run by the ledger owner; every asset is served from `static/` in this package.
See docs/console.md and docs/architecture.md, "The console"."""
