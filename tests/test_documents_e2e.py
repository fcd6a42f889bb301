"""Documents end to end through a real gateway process: the official openai, anthropic and
google-genai SDKs send a PDF to the other two families' fake upstreams, which record what reached
them; what cannot be translated comes back as a 400 in the client's own error shape."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from tests.native_support import KEY, Native, native

__all__ = ["native"]
PDF_BYTES = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PDF = base64.b64encode(PDF_BYTES).decode()


def _sent(n: Native, fake: str) -> Any:
    upstream = {"oa": n.oa, "an": n.an, "ge": n.ge}[fake]
    return upstream.received[-1].json()


# -- the openai SDK --------------------------------------------------------------------------

def _oai(n: Native) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{n.gw.url}/v1", api_key=KEY, max_retries=0)


FILE_PART: Any = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}",
                                           "filename": "report.pdf"}}


def test_openai_file_part_reaches_anthropic_and_gemini(native: Native) -> None:
    content: Any = [{"type": "text", "text": "summarise"}, FILE_PART]
    c = _oai(native)
    r = c.chat.completions.create(model="claude-x", messages=[{"role": "user", "content": content}])
    assert r.choices[0].message.content == "fake answer from claude-x"
    assert _sent(native, "an")["messages"][0]["content"][1] == {
        "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        "title": "report.pdf"}
    chunks = list(c.chat.completions.create(model="gemini-x", messages=[{"role": "user", "content": content}],
                                            stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).strip()
    assert _sent(native, "ge")["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "application/pdf", "data": PDF}}


def test_openai_file_id_is_a_400_in_openai_shape(native: Native) -> None:
    content: Any = [{"type": "text", "text": "summarise"}, {"type": "file", "file": {"file_id": "file-abc"}}]
    before = len(native.an.received)
    with pytest.raises(openai.BadRequestError) as exc:
        _oai(native).chat.completions.create(model="claude-x", messages=[{"role": "user", "content": content}])
    body: Any = exc.value.body
    assert body["type"] == "invalid_request_error"
    assert body["message"].startswith("messages[0].content[1]: a file part with only a file_id")
    assert len(native.an.received) == before  # nothing went upstream


# -- the anthropic SDK -----------------------------------------------------------------------

def _ant(n: Native) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=n.gw.url, api_key=KEY, max_retries=0)


DOCUMENT: Any = {"type": "document", "title": "report", "context": "draft", "citations": {"enabled": True},
                 "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}


def test_anthropic_document_reaches_openai_and_gemini(native: Native) -> None:
    a = _ant(native)
    content: Any = [DOCUMENT, {"type": "text", "text": "summarise"}]
    msg = a.messages.create(model="gpt-x", max_tokens=50, messages=[{"role": "user", "content": content}])
    assert msg.content[0].type == "text" and msg.content[0].text == "fake answer from gpt-x"
    assert _sent(native, "oa")["messages"][0]["content"][0] == {
        "type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "report.pdf"}}
    with a.messages.stream(model="gemini-x", max_tokens=50, messages=[{"role": "user", "content": content}]) as s:
        assert "".join(s.text_stream).strip() == "fake answer from gemini-x"
    assert _sent(native, "ge")["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "application/pdf", "data": PDF}}, {"text": "summarise"}]


def test_anthropic_url_document_goes_to_gemini_and_is_a_400_for_openai(native: Native) -> None:
    a = _ant(native)
    url_doc: Any = {"type": "document", "source": {"type": "url", "url": "https://x.test/paper.pdf"}}
    content: Any = [{"type": "text", "text": "summarise"}, url_doc]
    a.messages.create(model="gemini-x", max_tokens=50, messages=[{"role": "user", "content": content}])
    assert _sent(native, "ge")["contents"][0]["parts"][1] == {
        "fileData": {"fileUri": "https://x.test/paper.pdf", "mimeType": "application/pdf"}}
    with pytest.raises(anthropic.BadRequestError) as exc:
        a.messages.create(model="gpt-x", max_tokens=50, messages=[{"role": "user", "content": content}])
    body: Any = exc.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("messages[0].content[1]: a document block with a url source")


# -- the google-genai SDK --------------------------------------------------------------------

def test_genai_pdf_reaches_openai_and_anthropic(native: Native) -> None:
    g = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=native.gw.url, api_version="v1beta"))
    contents: Any = [types.Part.from_bytes(data=PDF_BYTES, mime_type="application/pdf"), "summarise"]
    r = g.models.generate_content(model="gpt-x", contents=contents)
    assert (r.text or "").strip() == "fake answer from gpt-x"
    assert _sent(native, "oa")["messages"][0]["content"][0] == {
        "type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "document.pdf"}}
    r = g.models.generate_content(model="claude-x", contents=contents)
    assert (r.text or "").strip() == "fake answer from claude-x"
    assert _sent(native, "an")["messages"][0]["content"][0] == {
        "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}
