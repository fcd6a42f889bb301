"""Upstream HTTP: the client protocol and its exceptions (base.py), our HTTP/1.1 client
(h1client.py over h1connection.py) and the library-backed ones with the `--transport` factory
(clients.py). Nothing here knows API families; adapters (../adapters/) build the calls."""
