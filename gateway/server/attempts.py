"""The one upstream attempt engine: candidates -> breaker -> key rotation -> retry or fallback ->
a result or a typed error. The relay, Midjourney (submits and task reads) and token counting
each give it `for_target(provider, target)`, called once per candidate (it may refuse the
candidate with `AttemptFailed` before anything is sent), which returns `send(api_key)`, one
delivery; the engine decides where deliveries go and when to stop.

Every delivery, whichever candidate or key it goes to, counts in `x.attempts` and stops at
`settings.routing.max_attempts` and the provider's `timeouts.total` (from the request's start).
A `send` answers with its result, or raises:
- `KeyRefused`: the upstream refused this API key (bench it, try the provider's next key);
- `AttemptFailed`: this upstream failed (a breaker failure; try the next candidate), or, with
  `final`, failed in a way no other candidate may retry (the request may have run);
- `GatewayError`: the upstream answered and the request itself is refused (no retry).
(docs/architecture.md, "The request path", step 7)"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ..config.snapshot import ProviderRuntime, RouteTarget, Snapshot
from ..errors import GatewayError, UpstreamError
from ..routing.breaker import Breaker
from .exchange import Exchange
from .state import WorkerState

T = TypeVar("T")
Send = Callable[[str], Awaitable[T]]
ForTarget = Callable[[ProviderRuntime, RouteTarget], Send[T]]


class KeyRefused(Exception):
    """The upstream refused the API key it was sent (HTTP 401/403, or a status or error code of
    the provider's `disable_on`: then `until_test`, the key stays benched until a test passes)."""

    def __init__(self, detail: str, status: int = 401, *, until_test: bool = False) -> None:
        super().__init__(detail)
        self.status, self.until_test = status, until_test


class AttemptFailed(Exception):
    """One upstream failed: the next candidate may serve. `final`: end the request with this
    error instead (the upstream may have acted on it). `breaker`: count it against the breaker."""

    def __init__(self, provider: str, detail: str, status: int = 502, *, final: GatewayError | None = None,
                 breaker: bool = True, maybe_sent: bool = False) -> None:
        super().__init__(detail)
        self.provider, self.detail, self.status = provider, detail, status
        self.final, self.breaker, self.maybe_sent = final, breaker, maybe_sent


class Exhausted(Exception):
    """No candidate served; `failures` in the order they happened (empty: none was tried)."""

    def __init__(self, failures: list[AttemptFailed]) -> None:
        super().__init__(failures[-1].detail if failures else "no upstream was available")
        self.failures = failures

    def error(self, x: Exchange, nothing_available: str) -> UpstreamError:
        """The client's error: 503 when no candidate could be tried, else the last failure's."""
        if not self.failures:
            return UpstreamError(nothing_available, status=503, code="no_upstream_available")
        last = self.failures[-1]
        status = last.status if last.status in (429, 504) else 502
        return UpstreamError(
            f"all {x.attempts} upstream attempt(s) failed; last: provider {last.provider}: {last.detail}",
            status=status, code="upstream_rate_limited" if status == 429 else "upstream_failed",
        )


class Attempts:
    """One request's deliveries. `x` None: not counted (background task reads)."""

    def __init__(
        self, state: WorkerState, snap: Snapshot, x: Exchange | None, *, breakers: bool = True,
        affinity: str | None = None,
    ) -> None:
        self.state, self.snap, self.x, self.breakers = state, snap, x, breakers
        self.affinity = affinity  # a hashed affinity key: each provider's keys in its pinned order

    async def first(self, targets: Iterable[RouteTarget], for_target: ForTarget[T]) -> T:
        """The result of the first candidate that serves; `Exhausted` when none does."""
        failures: list[AttemptFailed] = []
        for target in targets:
            if self.x is not None and self.x.attempts >= self.snap.settings.routing.max_attempts:
                break
            provider = self.snap.providers.get(target.provider)
            breaker = self._breaker(provider)
            if provider is None or (breaker is not None and not breaker.allow()):
                continue
            try:
                send = for_target(provider, target)
                ring = self.state.keyring(provider)
                for api_key in ring.rotation(self.affinity):  # each key at most once
                    self._count(provider, target)
                    stats = self.state.health.begin(provider.id, ring.index[api_key])
                    started = time.monotonic()
                    ok = False
                    refused: KeyRefused | None = None
                    try:
                        result = await send(api_key)
                        ok = True
                    except KeyRefused as exc:
                        refused = exc
                    except GatewayError:
                        ok = True  # the upstream answered: the request was refused, not the upstream
                        raise
                    finally:
                        self.state.health.end(stats, ok, started)
                    if refused is not None:  # refused; the provider's other keys may serve
                        ring.bench(api_key, reason=str(refused), status=refused.status,
                                   until_test=refused.until_test)
                        continue
                    break
                else:
                    raise AttemptFailed(provider.id, "every api key of this provider was refused")
            except AttemptFailed as failed:
                if breaker is not None:
                    breaker.failure() if failed.breaker else breaker.success()
                if failed.final is not None:
                    raise failed.final from None
                failures.append(failed)
                continue
            except GatewayError:
                if breaker is not None:
                    breaker.success()  # the upstream answered; the request itself was refused
                raise
            if breaker is not None:
                breaker.success()
            return result
        raise Exhausted(failures)

    async def with_keys(self, provider: ProviderRuntime, target: RouteTarget, send: Send[T]) -> T:
        """One upstream, no fallback: its API keys in rotation; `AttemptFailed` when none serves."""
        try:
            return await self.first((target,), lambda _provider, _target: send)
        except Exhausted as none:
            if none.failures:
                raise none.failures[-1] from None
            raise AttemptFailed(provider.id, "the upstream is not available") from None

    def _count(self, provider: ProviderRuntime, target: RouteTarget) -> None:
        x = self.x
        if x is None:
            return
        if x.attempts >= self.snap.settings.routing.max_attempts:
            raise AttemptFailed(provider.id, f"stopped after {x.attempts} attempt(s) (max_attempts)")
        if x.elapsed() >= provider.timeouts.total:
            raise AttemptFailed(provider.id, "the total timeout passed before another attempt", 504)
        x.attempts += 1
        x.provider, x.served_model = provider.id, target.model

    def _breaker(self, provider: ProviderRuntime | None) -> Breaker | None:
        if not self.breakers or provider is None:
            return None
        return self.state.breakers.get(provider.id, self.snap.settings.routing.breaker)
