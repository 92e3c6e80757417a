"""Reading the certificate chain exactly as the server sent it.

``SSLObject.get_unverified_chain()`` is public from Python 3.13; on 3.11 and 3.12 the same
method lives on the private ``_sslobj``. This is the one place that knows.
"""

from __future__ import annotations

import ssl

_DER = getattr(ssl, "_ssl").ENCODING_DER if hasattr(ssl, "_ssl") else 2  # noqa: B009


def unverified_chain_der(obj: ssl.SSLObject) -> tuple[bytes, ...]:
    """The peer's chain in the order it was sent, leaf first, as DER. Empty when the server
    sent no certificate (anonymous cipher suites)."""
    getter = getattr(obj, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(obj._sslobj, "get_unverified_chain", None)  # type: ignore[attr-defined]
    if getter is None:  # pragma: no cover - only very old Pythons
        der = obj.getpeercert(binary_form=True)
        return (der,) if der else ()
    certs = getter() or []
    out: list[bytes] = []
    for cert in certs:
        if isinstance(cert, bytes):
            out.append(cert)
        else:
            out.append(cert.public_bytes(_DER))
    return tuple(out)
