"""Everything that speaks an upstream's API, in folders from the bottom up (the order
tests/test_import_layers.py enforces; docs/architecture.md, "Packages and layers"):

- wire/: the msgspec types of each API family;
- translate/: the codecs, client format -> upstream format and back, `<client>_<upstream>.py`;
- transport/: the upstream HTTP clients behind one protocol;
- codecs.py: the table of which codec serves which (client family, upstream) pair;
- adapters/: one adapter per provider kind (URL, auth), and the registry of kinds;
- keyring.py: rotation over a provider's API keys.
"""
