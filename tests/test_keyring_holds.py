"""A worker keeps one KeyRing per provider across requests (its round robin and benches live
there); a keyless provider's ring holds its pseudo-key "" and is not rebuilt on every request."""

from __future__ import annotations

from gateway.providers.keyring import KeyRing


def test_a_ring_holds_the_keys_it_was_made_for() -> None:
    assert KeyRing(()).holds(())  # keyless: ("",) inside, () in the bundle
    assert KeyRing(("sk-a", "sk-b")).holds(("sk-a", "sk-b"))
    assert not KeyRing(("sk-a",)).holds(("sk-b",))  # a reload changed the keys: a new ring
    assert not KeyRing(()).holds(("sk-a",))
