"""Sign-in: an admin key or a client key, posted once, becomes a session cookie.

The form carries a nonce that must match a signed pre-session cookie (so another site cannot
sign a browser in with its own key), and a cross-site `Origin` is refused. A key that is unknown,
disabled, expired or not allowed from this address gets the same answer: nothing tells whether
it exists. The key itself is hashed for the lookup and dropped; it is never stored or logged."""

from __future__ import annotations

from . import respond
from .render import page
from .request import Request, client_ip, cookie_value, read_form, same_origin, usable
from .session import COOKIE, PRE_COOKIE, Role, Signer, same

WRONG_KEY = "This key cannot sign in to the console. Check it and try again."


class SignIn:
    def __init__(self, signer: Signer, request: Request) -> None:
        self.signer, self.request = signer, request

    async def form(self, error: str | None = None, status: int = 200) -> None:
        nonce, cookie = self.signer.pre_token()
        pre = respond.cookie(PRE_COOKIE, cookie, 3600, self.request.secure)
        text = page("login.html", session=None, csrf=nonce, error=error)
        respond.html(self.request.proto, status, text, [pre])

    async def submit(self) -> None:
        request = self.request
        form = await read_form(request)
        nonce = self.signer.pre_nonce(cookie_value(request.scope, PRE_COOKIE))
        if nonce is None or not same(form.get("csrf", ""), nonce) or not same_origin(request):
            await self.form("The sign-in form expired or came from another site. Try again.", 403)
            return
        who = self._identify(form.get("key", "").strip())
        if who is None:
            await self.form(WRONG_KEY, 401)
            return
        role, subject = who
        lifetime = int(request.worker.settings.console_session_hours * 3600)
        _, token = self.signer.issue(role, subject, lifetime)
        cookies = [respond.cookie(COOKIE, token, lifetime, request.secure),
                   respond.cookie(PRE_COOKIE, "", 0, request.secure)]
        respond.redirect(request.proto, "/console/", cookies)

    def _identify(self, secret: str) -> tuple[Role, str] | None:
        if not secret or len(secret) > 512:
            return None
        snap = self.request.snap
        admin = snap.admin_for(secret)
        if admin is not None:
            return "admin", admin.id
        key = snap.key_for(secret)
        if key is not None and usable(key) and key.allows_ip(client_ip(self.request)):
            return "key", key.id
        return None
