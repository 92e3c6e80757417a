"""A small HTTP client for AIA caIssuers and OCSP: one request, a total deadline, a size
cap. Runs urllib in a worker thread so the event loop never blocks. The caller waits at
most the deadline; each socket operation of the thread times out after the same period
and the deadline is checked between reads, so a trickling server cannot keep it long.

Only ``http://`` and ``https://`` URLs; anything else (``ldap://`` caIssuers URLs exist)
is refused with a message. Errors are :class:`FetchError` with a sysadmin-readable reason.
"""

from __future__ import annotations

import asyncio
import socket
import time

DEFAULT_TIMEOUT = 5.0
#: an issuer certificate or a PKCS#7 bundle of a few, or an OCSP response: far below this
DEFAULT_CAP = 1024 * 1024
_CHUNK = 65536
_USER_AGENT = "tlswatch"


class FetchError(Exception):
    """A fetch failed; the message says why."""


def _blocking_fetch(
    url: str, timeout: float, cap: int, body: bytes | None, content_type: str | None
) -> bytes:
    # Imported here, in the fetching thread, not with the module: most scans never fetch,
    # and urllib.request with http.client is ≈ 2.6 MB of RSS in every scan process.
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    headers = {"User-Agent": _USER_AGENT}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")  # noqa: S310 - scheme checked by fetch()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > cap:
                raise FetchError(f"response of {int(length)} bytes exceeds the {cap}-byte cap")
            buf = bytearray()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FetchError(f"timed out after {timeout:g}s")
                chunk = resp.read(min(_CHUNK, cap + 1 - len(buf)))
                if not chunk:
                    return bytes(buf)
                buf += chunk
                if len(buf) > cap:
                    raise FetchError(f"response exceeds the {cap}-byte cap")
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            raise FetchError(f"timed out after {timeout:g}s") from None
        text = getattr(reason, "strerror", None) or str(reason)
        raise FetchError(f"cannot connect: {text}") from None
    except TimeoutError:
        raise FetchError(f"timed out after {timeout:g}s") from None
    except (OSError, ValueError) as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # http.client oddities on malformed responses
        raise FetchError(f"malformed HTTP response: {type(exc).__name__}: {exc}") from None


async def fetch(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    cap: int = DEFAULT_CAP,
    body: bytes | None = None,
    content_type: str | None = None,
) -> bytes:
    """GET (or POST ``body``) ``url``; the response body, at most ``cap`` bytes, within
    ``timeout`` seconds in total."""
    if not url.lower().startswith(("http://", "https://")):
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise FetchError(f"unsupported URL scheme {scheme!r} (only http and https are fetched)")
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_blocking_fetch, url, timeout, cap, body, content_type),
            timeout + 1.0,
        )
    except TimeoutError:
        raise FetchError(f"timed out after {timeout:g}s") from None


__all__ = ["DEFAULT_CAP", "DEFAULT_TIMEOUT", "FetchError", "fetch"]
