"""Limit state in Redis, shared by every worker and machine: one Lua script per operation, the
calls of one event-loop tick pipelined together (`redis_pipe`).

With `cluster=True` the store talks to a Redis Cluster: the prefix becomes a hash tag
(`tollgate:` -> `{tollgate}:`) so that every key, including those the scripts derive from their
KEYS (`..':h'`, `..':r:<minute>'`), lives in one slot and every script runs on one node.

Redis errors are translated once, here, into `StateUnavailable`; the limiter decides whether
that refuses the request (fail closed, the default) or admits it unlimited (fail open).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import redis_lua
from .redis_pipe import ClusterScriptPipe, ScriptPipe
from .store import Ask, Grant, Settle, StateUnavailable

_KINDS = {1: "rate", 2: "slot", 3: "budget"}


class RedisStore:
    def __init__(self, url: str, prefix: str = "tollgate:", timeout_s: float = 0.5,
                 cluster: bool = False) -> None:
        self.prefix = cluster_prefix(prefix) if cluster else prefix
        self.cluster = cluster
        self.description = f"redis {'cluster ' if cluster else ''}at {redact(url)}"
        scripts = {"acquire": redis_lua.ACQUIRE, "release": redis_lua.RELEASE, "read": redis_lua.READ,
                   "seed": redis_lua.SEED, "set_credits": redis_lua.SET_CREDITS}
        # One quick retry on a fresh connection (a pooled socket may be stale after a Redis
        # restart), no backoff: when Redis is down the request is answered within the timeout.
        options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
                                   "retry": Retry(NoBackoff(), 1),
                                   "retry_on_error": [RedisConnectionError, RedisTimeoutError, OSError]}
        self.client: aioredis.Redis | RedisCluster
        self.pipe: ScriptPipe | ClusterScriptPipe
        if cluster:
            # `url` names any node (a startup node): the others and the slot map are discovered.
            # The retry is redis-py's cluster retry: after a connection error it re-reads the slot
            # map once (a failover) and tries the new owner.
            try:
                self.client = RedisCluster.from_url(url, **options)
            except RedisClusterException as exc:  # e.g. a database other than 0
                raise ValueError(f"redis_url {redact(url)} with redis_cluster = true: {exc}") from None
            self.pipe = ClusterScriptPipe(self.client, scripts, self.description, slot_key=self.prefix)
        else:
            self.client = aioredis.Redis.from_url(url, **options)
            self.pipe = ScriptPipe(self.client, scripts, self.description)

    def _submit(self, script: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        return self.pipe.submit(script, [self.prefix + k for k in keys], args)

    async def ping(self) -> None:
        try:
            if isinstance(self.pipe, ClusterScriptPipe):  # the node owning the store's slot
                node = await self.pipe.owner()
                await node.execute_command("PING")
            else:
                await self.client.ping()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StateUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from None

    async def acquire(self, ask: Ask) -> Grant:
        keys = [k for k, _, _ in ask.rates] + [k for k, _ in ask.slots] + [k for k, _, _ in ask.budgets]
        meter = 1 if ask.meter is not None else 0
        if ask.meter is not None:
            keys.append(ask.meter)
        args: list[Any] = [len(ask.rates), len(ask.slots), len(ask.budgets), meter, ask.lease, ask.lease_ms]
        for _, limit, cost in ask.rates:
            args += (limit, cost)
        args += [limit for _, limit in ask.slots]
        for _, limit, reserve in ask.budgets:
            args += (limit, reserve)
        if ask.credits:  # prepaid (billing/credits.py)
            args.append(len(ask.credits))
            args += [b for b, _ in ask.credits]
            keys += [k for _, k in ask.credits]
        future = self._submit("acquire", keys, [_json(args)])
        try:
            reply = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The request went away while Redis was admitting it: give back what it took.
            future.add_done_callback(lambda f: self._undo(f, ask))
            raise
        out = [int(v) for v in reply.split()]
        if not out[0]:
            held = out[5] if len(out) > 5 else 0
            return Grant(False, _KINDS[out[1]], out[2], out[3], spend=out[4:5], held=held, credits=out[6:7])
        nr, nb = len(ask.rates), len(ask.budgets)
        remaining, reset_ms = out[1 : 1 + nr], out[1 + nr : 1 + 2 * nr]
        spend, credits = out[1 + 2 * nr : 1 + 2 * nr + nb], out[1 + 2 * nr + nb :]
        return Grant(True, remaining=remaining, reset_ms=reset_ms, spend=spend, credits=credits)

    def _undo(self, future: asyncio.Future[Any], ask: Ask) -> None:
        if future.cancelled() or future.exception() is not None or not future.result().startswith(b"1"):
            return
        self._submit_release(Settle(tokens=[(k, limit, -cost) for k, limit, cost in ask.rates],
                                    slots=[k for k, _ in ask.slots], lease=ask.lease,
                                    reservations=[k for k, limit, reserve in ask.budgets
                                                  if limit >= 0 and reserve > 0]))

    def _submit_release(self, settle: Settle) -> asyncio.Future[Any]:
        keys = [k for k, _, _ in settle.tokens] + list(settle.slots) + [k for k, _, _ in settle.spend]
        keys += settle.reservations
        meter = 1 if settle.meter is not None else 0
        if settle.meter is not None:
            keys.append(settle.meter)
        args: list[Any] = [len(settle.tokens), len(settle.slots), len(settle.spend), meter, settle.lease,
                           settle.meter_tokens, len(settle.reservations)]
        for _, limit, delta in settle.tokens:
            args += (limit, delta)
        for _, nano, expire_at in settle.spend:
            args += (nano, expire_at)
        return self._submit("release", keys, [_json(args)])

    async def release(self, settle: Settle) -> None:
        # Shielded: a cancelled request still gives its slot and tokens back.
        await asyncio.shield(self._submit_release(settle))

    async def read(self, spend_keys: list[str], meter: str | None) -> tuple[list[int], int, int]:
        keys = [*spend_keys, meter] if meter is not None else list(spend_keys)
        reply = await self._submit("read", keys, [len(spend_keys), int(meter is not None)])
        out = [int(v) for v in reply]
        return out[: len(spend_keys)], out[-2], out[-1]

    async def seed(self, key: str, nano: int, expire_at: int) -> None:
        await self._submit("seed", [key], [nano, expire_at])

    async def set_credits(self, key: str, nano: int, seq: int) -> None:
        await self._submit("set_credits", [key], [nano, seq])

    async def close(self) -> None:
        await self.pipe.drain()
        await self.client.aclose()


def cluster_prefix(prefix: str) -> str:
    """The prefix as one Redis Cluster hash tag, so all of the store's keys share a slot:
    `tollgate:` -> `{tollgate}:`; a prefix that already holds a hash tag (`app:{tg}:`) is kept."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    if start >= 0 and end > start + 1:
        return prefix
    name = prefix.replace("{", "").replace("}", "").rstrip(":") or "tollgate"
    return "{" + name + "}:"


def _json(args: list[Any]) -> bytes:
    return msgspec.json.encode(args)


def redact(url: str) -> str:
    """redis://user:secret@host:6379/0 -> redis://host:6379/0 (never log a password)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}" if sep else url
