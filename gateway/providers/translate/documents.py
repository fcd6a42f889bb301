"""Documents (PDFs, plain text) across API families, in one place. The chat `file` part is the
common vocabulary, as chat is for everything else (see via_chat.py):

| Anthropic `document` block    | OpenAI chat `file` part              | Gemini part                     |
|-------------------------------|--------------------------------------|---------------------------------|
| source base64 (PDF)           | file_data `data:` URL + filename     | inlineData {mimeType, data}     |
| source text / content         | text part(s)                         | text part(s)                    |
| source url                    | 400: chat takes no file URLs         | fileData {fileUri, mimeType}    |
| source file (Files API id)    | 400                                  | 400                             |
| title (from filename)         | filename                             | (none)                          |

A `file` part with only a file_id (OpenAI's Files API) is a 400 towards Anthropic and Gemini: they
cannot read OpenAI's uploads. A chat `file` part whose data is text/* reaches Anthropic as a text
document source; Gemini inlineData text/* becomes a text part. On the internal hops between
Anthropic and Gemini a file part may hold a URL (`file_urls`), so a url document and a PDF fileData
cross; towards a real chat upstream they are a 400. Anthropic's `context` and `citations` have no
counterpart and are dropped; so are documents inside tool results (translated as text only).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from dataclasses import dataclass

from ...errors import InvalidRequest
from ..wire import anthropic as aw
from ..wire import gemini as gw
from ..wire.openai_chat import ContentPart, FileRef, ImageUrl, parse_data_url

PDF = "application/pdf"
DEFAULT_FILENAME = "document.pdf"  # OpenAI wants a filename with file_data; Gemini parts have none
_NO_URLS = ("cannot be sent to an OpenAI-compatible upstream: chat completions take no file URLs; "
            "send the PDF inline instead")


@dataclass(frozen=True, slots=True)
class FileInput:
    """A chat `file` part, read: base64 `data` or a `url`, and its media type."""

    media_type: str
    data: str | None = None
    url: str | None = None
    filename: str | None = None


def _decode_text(data: str, where: str) -> str:
    try:
        return base64.b64decode(data, validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}: the document's data is not valid base64", param=where) from None


def _filename(title: str | None, media_type: str) -> str:
    """The document's title as a filename (with an extension), else document.pdf."""
    if title and "." in title.rsplit("/", 1)[-1]:
        return title
    extension = ".pdf" if media_type == PDF else mimetypes.guess_extension(media_type) or ""
    return (title or "document") + extension


def file_part(data_or_url: str, filename: str | None) -> ContentPart:
    return ContentPart(type="file", file=FileRef(file_data=data_or_url, filename=filename))


# -- Anthropic client ------------------------------------------------------------------------

def anthropic_image(block: aw.Block) -> ContentPart:
    src = block.source or aw.Source(type="url")
    url = src.url or "" if src.type == "url" else f"data:{src.media_type};base64,{src.data}"
    return ContentPart(type="image_url", image_url=ImageUrl(url=url))


def _content_source(content: str | list[aw.Block] | None) -> list[ContentPart]:
    if isinstance(content, str) or content is None:
        return [ContentPart(type="text", text=content)] if content else []
    return [ContentPart(type="text", text=b.text) if b.type == "text" else anthropic_image(b)
            for b in content if (b.type == "text" and b.text) or b.type == "image"]


def from_anthropic(block: aw.Block, where: str, file_urls: bool) -> list[ContentPart]:
    """An Anthropic `document` block as chat parts. `file_urls`: whether a URL may travel in a
    file part (only on the internal hop to Gemini; a real chat upstream has no file URLs)."""
    src = block.source
    kind = src.type if src is not None else None
    if src is not None and kind == "base64" and src.data:
        media = src.media_type or PDF
        return [file_part(f"data:{media};base64,{src.data}", _filename(block.title, media))]
    if src is not None and kind == "text":
        return [ContentPart(type="text", text=src.data)] if src.data else []
    if src is not None and kind == "content":
        return _content_source(src.content)
    if src is not None and kind == "url" and src.url:
        if file_urls:
            return [file_part(src.url, block.title)]
        raise InvalidRequest(f"{where}: a document block with a url source {_NO_URLS} "
                             "(a base64 source)", param=where)
    if kind == "file":
        raise InvalidRequest(f"{where}: a document block with a file source (an Anthropic Files API "
                             "id) can only be sent to an Anthropic upstream", param=where)
    raise InvalidRequest(f"{where}: a document block needs a base64, text, content or url source "
                         f"(got {kind!r})", param=where)


# -- Gemini client ---------------------------------------------------------------------------

def from_gemini_blob(blob: gw.Blob, where: str) -> ContentPart | None:
    """A Gemini inlineData document (PDF or text) as a chat part; None for other media (images)."""
    if blob.mimeType == PDF:
        return file_part(f"data:{PDF};base64,{blob.data}", DEFAULT_FILENAME)
    if blob.mimeType.startswith("text/"):
        return ContentPart(type="text", text=_decode_text(blob.data, where))
    return None


def from_gemini_file(data: gw.FileData, where: str, file_urls: bool) -> ContentPart | None:
    """A Gemini fileData PDF as a chat part (see `from_anthropic` for `file_urls`); None for
    other media."""
    if data.mimeType != PDF:
        return None
    if file_urls:
        return file_part(data.fileUri, None)
    raise InvalidRequest(f"{where}: a fileData part with a PDF {_NO_URLS} (as inlineData)", param=where)


# -- chat `file` parts to Anthropic and Gemini -----------------------------------------------

def read_file(ref: FileRef | None, where: str, upstream: str) -> FileInput:
    """A chat `file` part's file: a data: URL, bare base64, or (inside the gateway) a URL."""
    if ref is None or not ref.file_data:
        if ref is not None and ref.file_id:
            raise InvalidRequest(
                f"{where}: a file part with only a file_id (an upload to OpenAI's Files API) cannot be "
                f"sent to {upstream} upstream, which cannot read OpenAI's files; send the file inline "
                "as file.file_data (data:application/pdf;base64,...)", param=where)
        raise InvalidRequest(f"{where}: a file part needs file.file_data", param=where)
    value, name = ref.file_data, ref.filename
    guess = mimetypes.guess_type(name or "")[0]
    parsed = parse_data_url(value)
    if parsed is not None:
        media = parsed[0] if parsed[0] != "application/octet-stream" else guess or PDF
        return FileInput(media, data=parsed[1], filename=name)
    if "://" in value:  # never in base64
        media = guess or mimetypes.guess_type(value.split("?")[0])[0] or PDF
        return FileInput(media, url=value, filename=name)
    return FileInput(guess or PDF, data=value, filename=name)  # bare base64


def to_anthropic(ref: FileRef | None, where: str) -> aw.Block:
    f = read_file(ref, where, "an Anthropic")
    if f.url is not None:
        source = aw.Source(type="url", url=f.url)
    elif f.media_type.startswith("text/"):
        source = aw.Source(type="text", media_type="text/plain", data=_decode_text(f.data or "", where))
    else:
        source = aw.Source(type="base64", media_type=f.media_type, data=f.data)
    title = f.filename if f.filename and f.filename != DEFAULT_FILENAME else None
    return aw.Block(type="document", source=source, title=title)


def to_gemini(ref: FileRef | None, where: str) -> gw.Part:
    f = read_file(ref, where, "a Gemini")
    if f.url is not None:
        return gw.Part(fileData=gw.FileData(fileUri=f.url, mimeType=f.media_type))
    return gw.Part(inlineData=gw.Blob(mimeType=f.media_type, data=f.data or ""))
