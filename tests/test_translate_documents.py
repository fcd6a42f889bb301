"""Documents (PDFs, plain text) in each translation direction, over the recorded-style requests in
tests/fixtures (anthropic_request_documents.json, openai_request_files.json,
gemini_request_pdf.json): Anthropic `document` blocks, OpenAI chat `file` parts and Gemini
inlineData/fileData, and the 400s for what a family cannot take (file URLs into chat, OpenAI
Files API ids, Anthropic Files API ids)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.providers.codecs import codec_for
from tests.test_translate_native import fixture, request

PDF = "JVBERi0xLjQKMSAwIG9iajw8L1R5cGUvQ2F0YWxvZz4+ZW5kb2JqCnRyYWlsZXI8PC9Sb290IDEgMCBSPj4KJSVFT0YK"
TEXT = "Minutes: ship on Friday."
URL_DOC = {"type": "document", "source": {"type": "url", "url": "https://x.test/paper.pdf"}}


def _doc(name: str) -> Any:
    return json.loads(fixture(name))


def _anthropic(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": blocks}]}


def _chat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


def _refused(client: str, upstream: str, body: Any, endpoint: str) -> str:
    with pytest.raises(InvalidRequest) as exc:
        request(codec_for(client, upstream), body, endpoint=endpoint)
    assert exc.value.status == 400
    return exc.value.message


# -- Anthropic client ------------------------------------------------------------------------

def test_anthropic_documents_to_openai_file_and_text_parts() -> None:
    endpoint, doc = request(codec_for("anthropic", "openai"), _doc("anthropic_request_documents.json"),
                            endpoint="messages")
    assert endpoint == "chat/completions"
    assert doc["messages"][0]["content"] == [
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "Q3 report.pdf"}},
        {"type": "text", "text": TEXT},  # text source: a plain text part
        {"type": "text", "text": "Slide 1: revenue up"}, {"type": "text", "text": "Slide 2: costs down"},
        {"type": "text", "text": "Summarise these documents."}]
    assert "context" not in json.dumps(doc) and "citations" not in json.dumps(doc)


def test_anthropic_documents_to_gemini_inline_data() -> None:
    _, doc = request(codec_for("anthropic", "gemini"), _doc("anthropic_request_documents.json"),
                     endpoint="messages")
    assert doc["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "application/pdf", "data": PDF}}, {"text": TEXT},
        {"text": "Slide 1: revenue up"}, {"text": "Slide 2: costs down"},
        {"text": "Summarise these documents."}]


def test_anthropic_url_document_to_gemini_file_data() -> None:
    _, doc = request(codec_for("anthropic", "gemini"), _anthropic([URL_DOC, {"type": "text", "text": "read"}]),
                     endpoint="messages")
    assert doc["contents"][0]["parts"][0] == {"fileData": {"fileUri": "https://x.test/paper.pdf",
                                                           "mimeType": "application/pdf"}}


def test_anthropic_url_document_to_openai_is_refused_naming_the_block() -> None:
    body = {"model": "m", "max_tokens": 9, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "read"}, URL_DOC]}]}
    message = _refused("anthropic", "openai", body, "messages")
    assert message.startswith("messages[2].content[1]: a document block with a url source")
    assert "OpenAI-compatible" in message


@pytest.mark.parametrize("upstream", ["openai", "gemini"])
def test_anthropic_files_api_document_is_refused(upstream: str) -> None:
    block = {"type": "document", "source": {"type": "file", "file_id": "file_011abc"}}
    message = _refused("anthropic", upstream, _anthropic([block]), "messages")
    assert message.startswith("messages[0].content[0]: a document block with a file source")


# -- OpenAI client ---------------------------------------------------------------------------

def test_openai_files_to_anthropic_documents() -> None:
    _, doc = request(codec_for("openai", "anthropic"), _doc("openai_request_files.json"))
    assert doc["messages"][0]["content"] == [
        {"type": "text", "text": "Summarise these files."},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
         "title": "q3-report.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": TEXT},
         "title": "minutes.txt"}]


def test_openai_files_to_gemini_inline_data() -> None:
    _, doc = request(codec_for("openai", "gemini"), _doc("openai_request_files.json"))
    assert doc["contents"][0]["parts"][1:] == [
        {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
        {"inlineData": {"mimeType": "text/plain", "data": "TWludXRlczogc2hpcCBvbiBGcmlkYXku"}}]


def test_openai_file_part_tolerates_bare_base64_and_unknown_fields() -> None:
    part = {"type": "file", "file": {"file_data": PDF, "filename": "a.pdf", "future": 1},
            "prompt_cache_breakpoint": {"mode": "explicit"}}
    _, doc = request(codec_for("openai", "anthropic"), _chat([part]))
    assert doc["messages"][0]["content"][0]["source"] == {"type": "base64", "media_type": "application/pdf",
                                                          "data": PDF}


@pytest.mark.parametrize(("upstream", "family"), [("anthropic", "an Anthropic"), ("gemini", "a Gemini")])
def test_openai_file_id_is_refused(upstream: str, family: str) -> None:
    body = _chat([{"type": "text", "text": "read"}, {"type": "file", "file": {"file_id": "file-abc123"}}])
    message = _refused("openai", upstream, body, "chat/completions")
    assert message.startswith(f"messages[0].content[1]: a file part with only a file_id (an upload to "
                              f"OpenAI's Files API) cannot be sent to {family} upstream")


# -- Gemini client ---------------------------------------------------------------------------

def test_gemini_pdf_to_openai_file_part() -> None:
    _, doc = request(codec_for("gemini", "openai"), _doc("gemini_request_pdf.json"), endpoint="generateContent")
    assert doc["messages"][0]["content"] == [
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "document.pdf"}},
        {"type": "text", "text": TEXT},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "Summarise these documents."}]


def test_gemini_pdf_to_anthropic_document() -> None:
    _, doc = request(codec_for("gemini", "anthropic"), _doc("gemini_request_pdf.json"), endpoint="generateContent")
    assert doc["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
        {"type": "text", "text": TEXT},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "text", "text": "Summarise these documents."}]


def test_gemini_pdf_file_data_to_anthropic_url_document_and_refused_by_openai() -> None:
    uri = "https://generativelanguage.googleapis.com/v1beta/files/abc"
    body = {"contents": [{"role": "user", "parts": [{"text": "read"},
                                                    {"fileData": {"fileUri": uri, "mimeType": "application/pdf"}}]}]}
    _, doc = request(codec_for("gemini", "anthropic"), body, endpoint="generateContent")
    assert doc["messages"][0]["content"][1] == {"type": "document", "source": {"type": "url", "url": uri}}
    message = _refused("gemini", "openai", body, "generateContent")
    assert message.startswith("contents[0].parts[1]: a fileData part with a PDF cannot be sent")


def test_gemini_snake_case_fields_and_url_safe_base64_as_google_genai_sends_them() -> None:
    """google-genai sends `mime_type` / `file_uri` and URL-safe base64 (Gemini takes both spellings);
    the other families get standard base64."""
    url_safe = PDF.replace("+", "-").replace("/", "_")
    assert url_safe != PDF
    uri = "https://x.test/paper.pdf"
    body = {"contents": [{"role": "user", "parts": [
        {"inlineData": {"data": url_safe, "mime_type": "application/pdf"}},
        {"fileData": {"file_uri": uri, "mime_type": "application/pdf"}}]}]}
    _, doc = request(codec_for("gemini", "anthropic"), body, endpoint="generateContent")
    assert doc["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
        {"type": "document", "source": {"type": "url", "url": uri}}]
