"""Tollgate's own HTTP/1.1 server on the worker's event loop (uvloop + httptools): the RSGI
scope and protocol the application was written for (gateway/server/rsgi.py), served without
leaving the Python thread. Why: granian answers on its Rust runtime threads, and every request
crossed to them and back three times (head, body, answer); on one core that cost ~70 µs of CPU
per request at c=1 (docs/architecture.md, "The HTTP server")."""
