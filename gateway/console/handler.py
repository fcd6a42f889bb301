"""The console's front door: `/console/...` paths, sign-in and sessions, who may see what.

server/routes.py hands every `/console/` request to `Console.handle`. Every answer is an HTML
page (or an asset, a download, JSON for the live figure) with the security headers of
respond.py; a refusal is a page with its status (400 naming the parameter, 403, 404, 503 when the
ledger cannot answer), never a JSON error or a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from ..config.snapshot import KeyRuntime, Snapshot
from . import filters, ledger, pages, queries, redeem, respond, static
from .cache import PageCache
from .filters import BadParameter
from .ledger import LedgerError
from .live import Live
from .render import page
from .request import Refused, Request, client_ip, cookie_value, read_form, same_origin, usable
from .session import COOKIE, Session, Signer, load_secret, same
from .signin import SignIn
from .web import Proto, Scope, Worker

log = logging.getLogger("tollgate.console")
PREFIX = "/console/"


Handler = Callable[[Request], Awaitable[None]]


class Console:
    """One per worker: the signing secret (read from the data directory on first use), the
    live-rate sampler and the page table."""

    def __init__(self) -> None:
        self._signer: Signer | None = None
        self.live = Live()
        self.cache = PageCache()  # figures of the overview and key views, a few seconds
        self._admin: dict[str, Handler] = {
            "": self.overview, "usage": self.usage, "usage.csv": self.download_csv,
            "usage.parquet": self.download_parquet, "api/live": self.live_rate,
        }

    def signer(self, worker: Worker) -> Signer:
        if self._signer is None:
            self._signer = Signer(load_secret(Path(worker.settings.data_dir)))
        return self._signer

    async def handle(self, worker: Worker, snap: Snapshot, scope: Scope, proto: Proto) -> None:
        if not worker.settings.console_enabled:
            respond.send(proto, 404, "text/plain; charset=utf-8", b"the console is off on this gateway\n")
            return
        path = scope.path
        if path == "/console":
            respond.redirect(proto, PREFIX)
            return
        rest = path.removeprefix(PREFIX)
        if rest.startswith("static/") and scope.method in ("GET", "HEAD"):
            if not static.serve(proto, rest.removeprefix("static/")):
                self._error(proto, Refused(404, "Not found", "no such file"))
            return
        signer = self.signer(worker)
        request = Request(worker, snap, scope, proto, signer.session(cookie_value(scope, COOKIE)))
        try:
            await self._route(request, signer, rest)
        except Refused as exc:
            self._error(proto, exc, request.session)
        except BadParameter as exc:
            self._error(proto, Refused(400, "Bad request", str(exc)), request.session)
        except LedgerError as exc:
            log.warning("console: the usage ledger did not answer: %s", exc)
            self._error(proto, Refused(503, "Usage ledger unavailable",
                                       "the usage ledger did not answer; try again shortly"), request.session)
        except Exception:  # a bug: logged, and still answered as a console page
            log.exception("console: unhandled error on %s %s", scope.method, scope.path)
            self._error(proto, Refused(500, "Internal error", "the console failed; see the gateway's log"))

    async def _route(self, request: Request, signer: Signer, rest: str) -> None:
        method = request.scope.method
        if rest == "login":
            sign_in = SignIn(signer, request)
            await (sign_in.submit() if method == "POST" else sign_in.form())
            return
        if rest == "logout" and method == "POST":
            await self.logout(request)
            return
        if rest == "me/redeem" and method == "POST":
            await self.redeem_code(request, signer)
            return
        if method not in ("GET", "HEAD"):
            raise Refused(405, "Method not allowed", f"{method} is not allowed here")
        session = self._live_session(request)
        if session is None:
            respond.redirect(request.proto, f"{PREFIX}login")
            return
        if session.role == "key":
            await self._key_route(request, session, rest)
            return
        handler = self._admin.get(rest)
        if handler is not None:
            await handler(request)
        elif rest.startswith("keys/"):
            await self.key_page(request, rest.removeprefix("keys/"))
        elif rest == "me":
            respond.redirect(request.proto, PREFIX)
        else:
            raise Refused(404, "Not found", "there is no console page here")

    async def _key_route(self, request: Request, session: Session, rest: str) -> None:
        if rest == "":
            respond.redirect(request.proto, f"{PREFIX}me")
        elif rest == "me":
            key = request.snap.keys_by_id[session.subject]
            signer = self.signer(request.worker)
            outcome = redeem.read_flash(signer, cookie_value(request.scope, redeem.FLASH_COOKIE), key.id)
            gone = [respond.cookie(redeem.FLASH_COOKIE, "", 0, request.secure)] if outcome else []
            await self._key_view(request, key, outcome, gone)
        elif rest in self._admin or rest.startswith("keys/"):
            raise Refused(403, "Forbidden", "this page is for operators: sign in with an admin key")
        else:
            raise Refused(404, "Not found", "there is no console page here")

    def _live_session(self, request: Request) -> Session | None:
        """The cookie's session, if what it names still exists in the live bundle (a key removed,
        disabled or expired since sign-in ends its session)."""
        session = request.session
        if session is None:
            return None
        if session.role == "admin":
            ok = any(a.id == session.subject for a in request.snap.admins_by_hash.values())
        else:
            key = request.snap.keys_by_id.get(session.subject)
            ok = key is not None and usable(key)
        if not ok:
            request.session = None
        return request.session

    async def overview(self, request: Request) -> None:
        f = filters.parse(request.scope.query_string)
        key = ("overview", request.snap.revision, request.scope.query_string)
        figures = await self.cache.get(key, lambda: pages.overview(request.worker, request.snap, f))
        live = pages.overview_live(request.worker, request.snap, figures)  # never cached
        self.live.sample(request.worker)  # so the page's first poll already has a rate
        self._page(request, "overview.html", {**figures, **live})

    async def usage(self, request: Request) -> None:
        f = filters.parse(request.scope.query_string)
        self._page(request, "usage.html", await pages.usage(request.worker, f))

    async def download_csv(self, request: Request) -> None:
        await self._download(request, "csv", "text/csv; charset=utf-8")

    async def download_parquet(self, request: Request) -> None:
        await self._download(request, "parquet", "application/vnd.apache.parquet")

    async def _download(self, request: Request, fmt: str, ctype: str) -> None:
        f = filters.parse(request.scope.query_string)
        path = await ledger.export(Path(request.worker.settings.data_dir), queries.export(f), fmt)
        respond.file(request.proto, ctype, str(path), f"usage.{fmt}")

    async def live_rate(self, request: Request) -> None:
        body = msgspec.json.encode(self.live.sample(request.worker))
        respond.send(request.proto, 200, "application/json", body)

    async def key_page(self, request: Request, key_id: str) -> None:
        key = request.snap.keys_by_id.get(key_id)
        if key is None:
            raise Refused(404, "Not found", "no key with this id in the live bundle")
        await self._key_view(request, key)

    async def _key_view(self, request: Request, key: KeyRuntime, redeemed: redeem.Outcome | None = None,
                        extra: respond.Headers | None = None) -> None:
        f = filters.parse(request.scope.query_string, frozenset({"range", "since", "until", "bucket"}))
        cache_key = ("key", key.id, request.snap.revision, request.scope.query_string)
        figures = self.cache.get(cache_key, lambda: pages.key_view(request.worker, request.snap, key, f))
        context = dict(await figures)
        host = str(request.scope.headers.get("host") or "127.0.0.1")
        context["base_url"] = f"{'https' if request.secure else 'http'}://{host}"
        context["redeemed"] = redeemed
        self._page(request, "key.html", context, extra)

    async def redeem_code(self, request: Request, signer: Signer) -> None:
        """A key holder's form: redeem a code onto the signed-in key, then back to its view with
        the outcome (credited amount and new balance, or why not)."""
        session = self._live_session(request)
        if session is None:
            respond.redirect(request.proto, f"{PREFIX}login")
            return
        if session.role != "key":
            raise Refused(403, "Forbidden", "codes are redeemed onto a client key: sign in with it")
        form = await read_form(request)
        if not same(form.get("csrf", ""), session.csrf) or not same_origin(request):
            raise Refused(403, "Forbidden", "the form was not sent from this console; reload and try again")
        key = request.snap.keys_by_id[session.subject]
        if not key.allows_ip(client_ip(request)):
            raise Refused(403, "Forbidden", "this key may not be used from this address")
        outcome = await redeem.redeem(request.worker, request.snap, key, form.get("code", ""))
        if outcome.ok:
            self.cache.drop("key", key.id)  # the view's balance shows the credit at once
        shown = redeem.flash(signer, outcome)
        respond.redirect(request.proto, f"{PREFIX}me",
                         [respond.cookie(redeem.FLASH_COOKIE, shown, redeem.FLASH_S, request.secure)])

    async def logout(self, request: Request) -> None:
        form = await read_form(request)
        session = request.session
        if session is not None and not same(form.get("csrf", ""), session.csrf):
            raise Refused(403, "Forbidden", "the form was not sent from this console; reload and try again")
        gone = respond.cookie(COOKIE, "", 0, request.secure)
        respond.redirect(request.proto, f"{PREFIX}login", [gone])

    def _page(self, request: Request, template: str, context: dict[str, object],
              extra: respond.Headers | None = None) -> None:
        respond.html(request.proto, 200, page(template, session=request.session, **context), extra)

    def _error(self, proto: Proto, exc: Refused, session: Session | None = None) -> None:
        respond.html(proto, exc.status, page("error.html", session=session, status=exc.status,
                                             title=exc.title, message=exc.message))

