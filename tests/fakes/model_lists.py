"""An upstream that only lists models, in each family's dialect and paging: OpenAI
`GET /v1/models`, Anthropic `GET /v1/models` (x-api-key, `after_id` pages), Gemini
`GET /v1beta/models` (x-goog-api-key, `pageToken` pages), Azure `GET /openai/deployments`.
Every request must carry `key`; others get a 401 that quotes the key they sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedApp


@dataclass
class ModelLists:
    key: str
    models: list[str] = field(default_factory=list)
    page_size: int = 2
    paths: list[str] = field(default_factory=list)
    port: int = 0
    _server: ThreadedApp | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ModelLists:
        self._server = ThreadedApp(self._handle)
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path_qs)
        h = request.headers
        sent = (h.get("authorization", "").removeprefix("Bearer ") or h.get("x-api-key")
                or h.get("x-goog-api-key") or h.get("api-key") or "")
        if sent != self.key:
            return web.json_response({"error": {"message": f"Incorrect API key provided: {sent}",
                                                "type": "authentication_error"}}, status=401)
        if request.path == "/v1beta/models":
            return web.json_response(self._gemini(request.query.get("pageToken", "")))
        if request.path == "/openai/deployments":
            return web.json_response({"data": [{"id": f"dep-{m}", "model": m} for m in self.models]})
        if request.path == "/v1/models" and "x-api-key" in h:
            return web.json_response(self._anthropic(request.query.get("after_id", "")))
        if request.path == "/v1/models":
            return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})
        return web.json_response({"error": {"message": "not found"}}, status=404)

    def _page(self, after: str) -> tuple[list[str], bool]:
        start = self.models.index(after) + 1 if after else 0
        page = self.models[start:start + self.page_size]
        return page, start + self.page_size < len(self.models)

    def _anthropic(self, after: str) -> dict[str, Any]:
        page, more = self._page(after)
        return {"data": [{"type": "model", "id": m} for m in page], "has_more": more,
                "first_id": page[0] if page else None, "last_id": page[-1] if page else None}

    def _gemini(self, token: str) -> dict[str, Any]:
        page, more = self._page(token)
        doc: dict[str, Any] = {"models": [{"name": f"models/{m}"} for m in page]}
        if more:
            doc["nextPageToken"] = page[-1]
        return doc
