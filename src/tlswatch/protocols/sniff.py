"""Recognising a TLS record where a plaintext protocol was expected.

The commonest mistake with STARTTLS schemes is pointing one at the implicit-TLS port
(``ldap://`` at 636, ``postgres://`` at a direct-TLS port): the server answers our plaintext
with a TLS alert. Saying so turns an opaque protocol_error into advice.
"""

from __future__ import annotations

#: TLS record content types, RFC 8446 §5.1 / RFC 5246 §6.2.1: change_cipher_spec(20),
#: alert(21), handshake(22), application_data(23), heartbeat(24, RFC 6520)
_CONTENT_TYPES = range(20, 25)


def looks_like_tls_record(data: bytes) -> bool:
    """True when ``data`` starts with a TLS (or SSL 3.0) record header."""
    return len(data) >= 3 and data[0] in _CONTENT_TYPES and data[1] == 3 and data[2] <= 4


def tls_hint(data: bytes, implicit: str) -> str:
    """A suffix for a protocol_error message when ``data`` is a TLS record; ``implicit``
    names what to use instead (``ldaps://``)."""
    if looks_like_tls_record(data):
        return f"; this is a TLS record: the port expects TLS right away (use {implicit})"
    return ""
