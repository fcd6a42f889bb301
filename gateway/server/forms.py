"""The multipart/form-data bodies of the upload endpoints (audio transcriptions, translations):
checked for the shape every such API requires before the model is read and the body relayed."""

from __future__ import annotations

import re

from ..errors import InvalidRequest, UnsupportedMediaType

FORM = "multipart/form-data"
_BOUNDARY = re.compile(r';\s*boundary="?([^";]+)"?', re.IGNORECASE)
_DISPOSITION = re.compile(rb"^content-disposition:\s*form-data(.*)$", re.IGNORECASE | re.MULTILINE)
_NAME = re.compile(rb';\s*name="([^"]*)"')
_FILENAME = re.compile(rb';\s*filename\*?=')


def check_form(content_type: str, body: bytes) -> None:
    """A multipart/form-data body with its boundary and a `file` part that is a file upload."""
    media = content_type.partition(";")[0].strip().lower()
    if media != FORM:
        shown = content_type[:100] or "none"
        raise UnsupportedMediaType(f"unsupported content type `{shown}`: send the file as {FORM}")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise InvalidRequest(f"the {FORM} content type has no boundary")
    delimiter = b"--" + match.group(1).strip().encode("latin-1", "replace")
    if not body.startswith(delimiter) and b"\r\n" + delimiter not in body:
        raise InvalidRequest(f"the request body is not {FORM} with the boundary of its content type")
    for part in body.split(delimiter)[1:]:
        head = part.partition(b"\r\n\r\n")[0]
        for params in _DISPOSITION.findall(head):
            name = _NAME.search(params)
            if name is not None and name.group(1) == b"file" and _FILENAME.search(params):
                return
    raise InvalidRequest("file: a file upload is required (a form part `file` with a filename)", param="file")
