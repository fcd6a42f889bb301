"""The table of malformed requests swept by test_bad_input_sweep.py: every POST endpoint, each
with the generic bad bodies and its own family's key fields in wrong shapes.

Left out on purpose (the upstream is the judge, the gateway invents no rule): passthrough bodies
whose gateway-read fields are well typed (e.g. `messages: [1, 2]` to an OpenAI upstream, an
empty `messages` list, an OpenAI content part of an unknown type to an OpenAI upstream).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

BODY_ERRORS = frozenset({400, 422})
TOO_LARGE = frozenset({413})
MEDIA = frozenset({415})
METHOD = frozenset({404, 405})
AUTH = frozenset({401})

MSG = [{"role": "user", "content": "hi"}]
CONTENTS = [{"role": "user", "parts": [{"text": "hi"}]}]
DEEP = {"a": {"b": {"c": "d"}}}


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    family: str  # openai | anthropic | gemini | mj: the error shape expected
    body: bytes = b""
    method: str = "POST"
    content_type: str | None = "application/json"
    auth: str = "client"  # client | admin | none
    statuses: frozenset[int] = BODY_ERRORS


def enc(doc: Any) -> bytes:
    return json.dumps(doc).encode()


GENERIC: dict[str, bytes] = {
    "empty": b"",
    "not-json": b"{not json",
    "truncated": b'{"model": "gpt-x", "messages": [',
    "array": b"[]",
    "array-of-object": b'[{"model": "gpt-x"}]',
    "string": b'"hello"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "nan": b'{"model": NaN}',
    "infinity": b'{"model": "gpt-x", "max_tokens": Infinity}',
    "invalid-utf8": b'{"model": "\xff\xfe", "prompt": "\xc3\x28"}',
}


def model_shapes(base: dict[str, Any]) -> dict[str, bytes]:
    return {
        "model-number": enc({**base, "model": 42}),
        "model-list": enc({**base, "model": ["gpt-x"]}),
        "model-null": enc({**base, "model": None}),
        "model-deep": enc({**base, "model": DEEP}),
        "model-missing": enc({k: v for k, v in base.items() if k != "model"}),
    }


OPENAI_BASES: dict[str, dict[str, Any]] = {
    "chat/completions": {"model": "gpt-x", "messages": MSG},
    "completions": {"model": "gpt-x", "prompt": "hi"},
    "embeddings": {"model": "gpt-x", "input": "hi"},
    "images/generations": {"model": "gpt-x", "prompt": "a cat"},
    "audio/speech": {"model": "gpt-x", "input": "hi", "voice": "alloy"},
    "moderations": {"model": "gpt-x", "input": "hi"},
    "rerank": {"model": "gpt-x", "query": "q", "documents": ["a"]},
    "responses": {"model": "gpt-x", "input": "hi"},
}


def chat_specific() -> dict[str, bytes]:
    def chat(model: str, **kw: Any) -> bytes:
        return enc({"model": model, "messages": MSG, **kw})

    out = {
        "messages-string": enc({"model": "gpt-x", "messages": "hi"}),
        "messages-object": enc({"model": "gpt-x", "messages": {"role": "user"}}),
        "messages-deep": enc({"model": "gpt-x", "messages": DEEP}),
        "max-tokens-1e30": chat("gpt-x", max_tokens=1e30),
        "max-tokens-huge-int": b'{"model": "gpt-x", "messages": [], "max_tokens": ' + b"9" * 40 + b"}",
        "max-tokens-negative": chat("gpt-x", max_tokens=-1),
        "max-tokens-string": chat("gpt-x", max_tokens="100"),
        "max-completion-tokens-negative": chat("gpt-x", max_completion_tokens=-5),
        "stream-yes": chat("gpt-x", stream="yes"),
        "stream-options-string": chat("gpt-x", stream=True, stream_options="usage"),
        "metadata-list": chat("gpt-x", metadata=["a"]),
    }
    for model in ("claude-x", "gemini-x"):  # translated: the codec reads every message
        out |= {
            f"{model}-messages-numbers": enc({"model": model, "messages": [1, 2]}),
            f"{model}-messages-nulls": enc({"model": model, "messages": [None, None]}),
            f"{model}-content-number": enc({"model": model, "messages": [{"role": "user", "content": 5}]}),
            f"{model}-content-deep": enc({"model": model, "messages": [{"role": "user", "content": DEEP}]}),
            f"{model}-part-unknown": enc({"model": model, "messages": [
                {"role": "user", "content": [{"type": "hologram", "hologram": "x"}]}]}),
            f"{model}-part-not-object": enc({"model": model, "messages": [{"role": "user", "content": [7]}]}),
            f"{model}-role-number": enc({"model": model, "messages": [{"role": 3, "content": "hi"}]}),
            f"{model}-tools-string": chat(model, tools="all"),
            f"{model}-tool-calls-string": enc({"model": model, "messages": [
                {"role": "assistant", "content": None, "tool_calls": "x"}, *MSG]}),
        }
    return out


def embeddings_specific() -> dict[str, bytes]:
    return {f"gemini-input-{k}": enc({"model": "gemini-x", "input": v})
            for k, v in {"number": 42, "nulls": [None], "deep": DEEP, "tokens": [[1, 2]],
                         "mixed": ["a", 1]}.items()}


def anthropic_specific(count: bool) -> dict[str, bytes]:
    def msgs(model: str, messages: Any, **kw: Any) -> bytes:
        return enc({"model": model, "max_tokens": 16, "messages": messages, **kw})

    out = {
        "messages-string": msgs("claude-x", "hi"),
        "messages-object": msgs("claude-x", {"role": "user"}),
        "messages-deep": msgs("claude-x", DEEP),
        "messages-missing": enc({"model": "claude-x", "max_tokens": 16}),
        "gpt-x-messages-numbers": msgs("gpt-x", [1, 2]),
        "gpt-x-messages-nulls": msgs("gpt-x", [None]),
        "gpt-x-content-number": msgs("gpt-x", [{"role": "user", "content": 5}]),
        "gpt-x-content-deep": msgs("gpt-x", [{"role": "user", "content": DEEP}]),
        "gpt-x-block-not-object": msgs("gpt-x", [{"role": "user", "content": ["hi", 3]}]),
        "gpt-x-system-number": msgs("gpt-x", MSG, system=5),
        "gpt-x-system-deep": msgs("gpt-x", MSG, system=DEEP),
        "gemini-x-messages-numbers": msgs("gemini-x", [1, 2]),
    }
    if not count:  # block types are for the upstream's count endpoint to judge, not the estimate
        out |= {
            "gpt-x-block-unknown": msgs("gpt-x", [{"role": "user", "content": [{"type": "hologram"}]}]),
            "gemini-x-block-unknown": msgs("gemini-x", [{"role": "user", "content": [{"type": "hologram"}]}]),
            "max-tokens-1e30": msgs("claude-x", MSG, max_tokens=1e30),
            "max-tokens-negative": msgs("claude-x", MSG, max_tokens=-1),
            "max-tokens-string": msgs("claude-x", MSG, max_tokens="16"),
            "stream-yes": msgs("claude-x", MSG, stream="yes"),
            "gpt-x-tools-string": msgs("gpt-x", MSG, tools="all"),
        }
    return out


def gemini_specific(verb: str) -> dict[str, bytes]:
    if verb == "embedContent":
        return {f"content-{k}": enc({"content": v}) for k, v in {
            "string": "hi", "number": 4, "null": None, "list": ["hi"], "parts-string": {"parts": "hi"},
            "parts-numbers": {"parts": [1]}, "deep": {"parts": [{"text": DEEP}]}}.items()}
    if verb == "batchEmbedContents":
        return {f"requests-{k}": enc({"requests": v}) for k, v in {
            "string": "hi", "object": {"content": {"parts": [{"text": "hi"}]}}, "numbers": [1],
            "nulls": [None], "content-number": [{"content": 5}], "deep": [{"content": DEEP}],
            "empty-list": []}.items()}
    out = {
        "contents-string": enc({"contents": "hi"}),
        "contents-object": enc({"contents": {"role": "user"}}),
        "contents-deep": enc({"contents": DEEP}),
    }
    if verb == "countTokens":  # a generation without contents goes to the upstream, which judges it
        return out | {"contents-missing": enc({"generationConfig": {}}),
                      "generate-request-string": enc({"generateContentRequest": "x"}),
                      "gpt-x/contents-numbers": enc({"contents": [1, 2]})}
    out |= {
        "generation-config-string": enc({"contents": CONTENTS, "generationConfig": "yes"}),
        "max-output-tokens-1e30": enc({"contents": CONTENTS, "generationConfig": {"maxOutputTokens": 1e30}}),
        "max-output-tokens-negative": enc({"contents": CONTENTS, "generationConfig": {"maxOutputTokens": -1}}),
        "max-output-tokens-string": enc({"contents": CONTENTS, "generationConfig": {"maxOutputTokens": "9"}}),
    }
    for model in ("gpt-x", "claude-x"):  # translated: the codec reads every part
        out |= {
            f"{model}/contents-numbers": enc({"contents": [1, 2]}),
            f"{model}/contents-nulls": enc({"contents": [None]}),
            f"{model}/parts-string": enc({"contents": [{"role": "user", "parts": "hi"}]}),
            f"{model}/parts-numbers": enc({"contents": [{"role": "user", "parts": [1]}]}),
            f"{model}/part-unknown": enc({"contents": [{"role": "user", "parts": [{"hologram": "x"}]}]}),
            f"{model}/text-deep": enc({"contents": [{"role": "user", "parts": [{"text": DEEP}]}]}),
            f"{model}/system-number": enc({"contents": CONTENTS, "systemInstruction": 5}),
            f"{model}/tools-string": enc({"contents": CONTENTS, "tools": "all"}),
        }
    return out


def mj_specific(endpoint: str) -> dict[str, bytes]:
    shapes: dict[str, dict[str, Any]] = {
        "imagine": {"prompt-number": {"prompt": 4}, "prompt-list": {"prompt": ["a"]},
                    "prompt-null": {"prompt": None}, "prompt-deep": {"prompt": DEEP},
                    "prompt-missing": {}, "prompt-blank": {"prompt": "  "}},
        "action": {"custom-id-number": {"customId": 1, "taskId": "t"}, "task-id-list": {"taskId": ["t"]},
                   "task-id-missing": {"customId": "MJ::JOB::upsample::1::x"},
                   "task-unknown": {"customId": "MJ::JOB::upsample::1::x", "taskId": "no-such-task"},
                   "custom-id-deep": {"customId": DEEP, "taskId": "t"}},
        "blend": {"array-string": {"base64Array": "x"}, "array-numbers": {"base64Array": [1, 2]},
                  "one-image": {"base64Array": ["data:image/png;base64,AA=="]}, "missing": {}},
        "describe": {"base64-number": {"base64": 4}, "missing": {}, "link-deep": {"link": DEEP}},
        "list-by-condition": {"ids-string": {"ids": "t"}, "ids-numbers": {"ids": [1]},
                              "ids-deep": {"ids": DEEP}, "ids-nulls": {"ids": [None]}},
    }
    return {k: enc(v) for k, v in shapes[endpoint].items()}


GEMINI_VERBS = ("generateContent", "streamGenerateContent", "countTokens", "embedContent", "batchEmbedContents")
MJ_ENDPOINTS = ("imagine", "action", "blend", "describe")


def gemini_path(verb: str, model: str = "gemini-x") -> str:
    return f"/v1beta/models/{model}:{verb}"


def body_cases() -> list[Case]:
    cases: list[Case] = []
    for endpoint, base in OPENAI_BASES.items():
        bodies = GENERIC | model_shapes(base)
        if endpoint == "chat/completions":
            bodies |= chat_specific()
        if endpoint == "embeddings":
            bodies |= embeddings_specific()
        if endpoint in ("completions", "responses"):
            bodies |= {"stream-yes": enc({**base, "stream": "yes"}),
                       "max-tokens-negative": enc({**base, "max_tokens": -3, "max_output_tokens": -3})}
        cases += [Case(f"openai:{endpoint}:{k}", f"/v1/{endpoint}", "openai", v) for k, v in bodies.items()]
    anthropic_base = {"model": "claude-x", "max_tokens": 16, "messages": MSG}
    for path, count in (("/v1/messages", False), ("/v1/messages/count_tokens", True)):
        bodies = GENERIC | model_shapes(anthropic_base) | anthropic_specific(count)
        cases += [Case(f"anthropic:{path}:{k}", path, "anthropic", v) for k, v in bodies.items()]
    for verb in GEMINI_VERBS:
        for k, v in (GENERIC | gemini_specific(verb)).items():
            model, _, name = k.rpartition("/")
            cases.append(Case(f"gemini:{verb}:{k}", gemini_path(verb, model or "gemini-x"), "gemini", v))
    for endpoint in MJ_ENDPOINTS:
        bodies = GENERIC | mj_specific(endpoint)
        cases += [Case(f"mj:{endpoint}:{k}", f"/mj/submit/{endpoint}", "mj", v,
                       statuses=BODY_ERRORS | ({404} if k == "task-unknown" else set()))
                  for k, v in bodies.items()]
    listing = {k: v for k, v in GENERIC.items() if k != "empty"} | mj_specific("list-by-condition")
    cases += [Case(f"mj:list:{k}", "/mj/task/list-by-condition", "mj", v) for k, v in listing.items()]
    admin = GENERIC | {"sql-number": enc({"sql": 4}), "sql-null": enc({"sql": None}), "sql-deep": enc({"sql": DEEP}),
                       "sql-missing": enc({}), "sql-syntax": enc({"sql": "SELEC 1"}),
                       "sql-write": enc({"sql": "DROP TABLE usage"}), "sql-blank": enc({"sql": " "})}
    cases += [Case(f"admin:usage:{k}", "/admin/usage/query", "openai", v, auth="admin") for k, v in admin.items()]
    return cases


def multipart(*parts: tuple[str, str, bytes]) -> tuple[str, bytes]:
    """(content-type, body) of a multipart/form-data request: parts are (name, filename, data)."""
    boundary = "sweepboundary42"
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", out + f"--{boundary}--\r\n".encode()


def audio_cases() -> list[Case]:
    cases = []
    for endpoint in ("audio/transcriptions", "audio/translations"):
        path = f"/v1/{endpoint}"
        no_file = multipart(("model", "", b"gpt-x"), ("language", "", b"en"))
        no_model = multipart(("file", "a.wav", b"RIFF0000WAVE"))
        file_as_field = multipart(("model", "", b"gpt-x"), ("file", "", b"not a file"))
        cases += [
            Case(f"openai:{endpoint}:json-body", path, "openai", enc({"model": "gpt-x", "file": "a.wav"}),
                 statuses=MEDIA | BODY_ERRORS),
            Case(f"openai:{endpoint}:no-content-type", path, "openai", b"model=gpt-x", content_type=None,
                 statuses=MEDIA | BODY_ERRORS),
            Case(f"openai:{endpoint}:missing-file", path, "openai", no_file[1], content_type=no_file[0]),
            Case(f"openai:{endpoint}:missing-model", path, "openai", no_model[1], content_type=no_model[0]),
            Case(f"openai:{endpoint}:file-not-a-file", path, "openai", file_as_field[1],
                 content_type=file_as_field[0]),
            Case(f"openai:{endpoint}:empty", path, "openai", b"", content_type=no_file[0]),
            Case(f"openai:{endpoint}:garbage", path, "openai", b"\xff\x00garbage",
                 content_type="multipart/form-data; boundary=zzz"),
            Case(f"openai:{endpoint}:no-boundary", path, "openai", no_file[1], content_type="multipart/form-data"),
        ]
    return cases


POST_PATHS: dict[str, str] = {  # path -> family of its errors
    **{f"/v1/{e}": "openai" for e in (*OPENAI_BASES, "audio/transcriptions")},
    "/v1/messages": "anthropic",
    "/v1/messages/count_tokens": "anthropic",
    **{gemini_path(v): "gemini" for v in GEMINI_VERBS},
    **{f"/mj/submit/{e}": "mj" for e in MJ_ENDPOINTS},
    "/mj/task/list-by-condition": "mj",
    "/admin/usage/query": "openai",
}
VALID: dict[str, bytes] = {  # a well-formed body for each path (used with a wrong header or method)
    **{f"/v1/{e}": enc(b) for e, b in OPENAI_BASES.items()},
    "/v1/audio/transcriptions": enc({"model": "gpt-x"}),
    "/v1/messages": enc({"model": "claude-x", "max_tokens": 16, "messages": MSG}),
    "/v1/messages/count_tokens": enc({"model": "claude-x", "messages": MSG}),
    **{gemini_path(v): enc({"contents": CONTENTS}) for v in GEMINI_VERBS[:3]},
    gemini_path("embedContent"): enc({"content": {"parts": [{"text": "hi"}]}}),
    gemini_path("batchEmbedContents"): enc({"requests": [{"content": {"parts": [{"text": "hi"}]}}]}),
    "/mj/submit/imagine": enc({"prompt": "a cat"}),
    "/mj/submit/action": enc({"customId": "MJ::JOB::upsample::1::x", "taskId": "t"}),
    "/mj/submit/blend": enc({"base64Array": ["data:image/png;base64,AA==", "data:image/png;base64,AA=="]}),
    "/mj/submit/describe": enc({"base64": "data:image/png;base64,AA=="}),
    "/mj/task/list-by-condition": enc({"ids": []}),
    "/admin/usage/query": enc({"sql": "select 1"}),
}
WRONG_TYPES = ("application/xml", "application/octet-stream", "multipart/form-data; boundary=x")


def header_and_method_cases() -> list[Case]:
    cases = []
    for path, family in POST_PATHS.items():
        auth = "admin" if path.startswith("/admin") else "client"
        body = VALID[path]
        if path != "/v1/audio/transcriptions":
            for ctype in WRONG_TYPES:
                cases.append(Case(f"{family}:{path}:content-type={ctype.split(';')[0]}", path, family, body,
                                  content_type=ctype, auth=auth, statuses=MEDIA))
        for method in ("GET", "PUT", "DELETE"):
            cases.append(Case(f"{family}:{path}:{method}", path, family, b"", method=method, content_type=None,
                              auth=auth, statuses=METHOD))
        # no key at all, with a body that is bad too: auth is refused first, in the family's shape
        cases.append(Case(f"{family}:{path}:no-key", path, family, b"{not json", auth="none",
                          statuses=AUTH))
        cases.append(Case(f"{family}:{path}:no-key-empty", path, family, b"", auth="none", statuses=AUTH))
    cases.append(Case("openai:/admin/usage/query:client-key", "/admin/usage/query", "openai",
                      VALID["/admin/usage/query"], statuses=AUTH))
    return cases


def too_large_cases() -> list[Case]:
    big = b'{"model": "gpt-x", "x": "' + b"x" * 1_100_000 + b'"}'
    return [Case(f"{family}:{path}:too-large", path, family, big,
                 auth="admin" if path.startswith("/admin") else "client", statuses=TOO_LARGE)
            for path, family in POST_PATHS.items() if path != "/v1/audio/transcriptions"]


def all_cases() -> list[Case]:
    return body_cases() + audio_cases() + header_and_method_cases() + too_large_cases()
