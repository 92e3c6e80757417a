"""Asking an OCSP responder (RFC 6960 Appendix A): POST the DER request with
``Content-Type: application/ocsp-request``, or GET it base64- and URL-encoded under the
responder URL when the encoding is short (RFC 5019 §5: under 255 bytes, cacheable).

The request is built and the response judged purely in :mod:`tlswatch.x509.ocsp`.
"""

from __future__ import annotations

import base64
import urllib.parse

from tlswatch.model import Fetched
from tlswatch.net.http import FetchError, fetch
from tlswatch.net.runcache import RunCache

GET_LIMIT = 255
REQUEST_TYPE = "application/ocsp-request"


def get_url(url: str, request: bytes) -> str:
    encoded = urllib.parse.quote(base64.b64encode(request).decode("ascii"), safe="")
    return url.rstrip("/") + "/" + encoded


async def query(
    url: str,
    request: bytes,
    subject_sha256: str,
    cache: RunCache[Fetched],
    timeout: float,
    cap: int,
    method: str = "auto",
) -> Fetched:
    """The responder's answer as a :class:`Fetched` (data or error), cached per run."""
    use_get = method == "get" or (
        method == "auto" and len(get_url(url, request)) - len(url) < GET_LIMIT
    )

    async def ask() -> Fetched:
        try:
            if use_get:
                data = await fetch(get_url(url, request), timeout=timeout, cap=cap)
            else:
                data = await fetch(
                    url, timeout=timeout, cap=cap, body=request, content_type=REQUEST_TYPE
                )
        except FetchError as exc:
            return Fetched(
                "ocsp", url, error=f"responder unreachable: {exc}", subject_sha256=subject_sha256
            )
        return Fetched("ocsp", url, data=data, subject_sha256=subject_sha256)

    return await cache.get(("ocsp", url, request, use_get), ask)


__all__ = ["get_url", "query"]
