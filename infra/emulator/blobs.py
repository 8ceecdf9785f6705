"""Media handlers: ``GET``/``HEAD /blobs/{blob_id}``, the files behind signed URLs.

Unsigned by key (the URL's own signature and expiry are checked), with byte ranges as cloud
storage serves them. Errors are plain text, not JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.emulator.errors import ApiError
from infra.emulator.media import parse_range
from infra.emulator.routing import Request, Response

if TYPE_CHECKING:
    from infra.emulator.app import EmulatorApp


def get_blob(app: EmulatorApp, req: Request) -> Response:
    blob_id = req.params["blob_id"]
    app.media.check_signature(blob_id, req.q_one("expires"), req.q_one("sig"))
    data, mime = app.media.content(blob_id)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=0"}
    status = 200
    try:
        byte_range = parse_range(req.headers.get("Range"), len(data))
    except ApiError:
        return Response(416, b"", mime, {"Content-Range": f"bytes */{len(data)}"})
    if byte_range is not None:
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        data = data[start : end + 1]
        status = 206
    if req.method == "HEAD":
        # The length of what GET would send; the transport sends no body for HEAD.
        headers["Content-Length"] = str(len(data))
    return Response(status, data, mime, headers)


def error(exc: ApiError) -> Response:
    return Response(exc.status, exc.message.encode(), "text/plain")
