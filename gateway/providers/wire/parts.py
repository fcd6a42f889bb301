"""The content part types of each family that a translation knows of. A known part the target
family has nothing for is dropped as documented (audio, server tools, ...); a part of a type no
family defines is the client's mistake, refused with a 400 naming it instead of a silent drop."""

from __future__ import annotations

from typing import Any

from ...errors import InvalidRequest

OPENAI_PARTS = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
ANTHROPIC_BLOCKS = frozenset({
    "text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use",
    "tool_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result", "mcp_tool_use",
    "mcp_tool_result", "container_upload",
})  # fmt: skip
GEMINI_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
               "codeExecutionResult")


def check_type(kind: str, known: frozenset[str], where: str) -> None:
    if kind not in known:
        raise InvalidRequest(f"{where}: unknown content type {kind[:60]!r}", param=where)


def check_gemini_part(part: Any, where: str) -> None:
    """A Gemini part carries one of the data fields (`text`, `inlineData`, ...)."""
    if all(getattr(part, name, None) is None for name in GEMINI_DATA):
        fields = ", ".join(GEMINI_DATA)
        raise InvalidRequest(f"{where}: the part has none of the fields {fields}", param=where)
