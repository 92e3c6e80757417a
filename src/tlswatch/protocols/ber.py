"""A small, capped BER/DER TLV codec: just what the LDAP StartTLS exchange needs.

LDAP messages are BER with the restrictions of RFC 4511 §5.1: only the definite form of
length, primitive OCTET STRINGs. So this codec knows tag classes and numbers (X.690 §8.1.2,
including the high-tag-number form), the short and long definite length forms (X.690
§8.1.3.4, §8.1.3.5), and rejects the indefinite form (§8.1.3.6) and the reserved length
octet 0xFF (§8.1.3.5 c). Every length is checked against a cap before anything is buffered,
so a peer announcing a 4 GiB element costs nothing.

Non-minimal long-form lengths (``84 00 00 00 0c``) are accepted: BER allows them and
Active Directory sends them on every message.

:func:`read_tlv` is incremental: it returns ``None`` while the element is incomplete, which
is what a sans-IO negotiator needs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: the default cap on one element's content length
DEFAULT_MAX_LENGTH = 64 * 1024
#: more length octets than this cannot describe a length under any sane cap (X.690 allows 126)
MAX_LENGTH_OCTETS = 8
#: a tag number needing more base-128 digits than this is not one LDAP uses
MAX_TAG_OCTETS = 4


class BERError(ValueError):
    """The bytes are not a valid (or acceptable) BER encoding."""


class TagClass(enum.IntEnum):
    """X.690 §8.1.2.2: bits 8 and 7 of the identifier octet."""

    UNIVERSAL = 0
    APPLICATION = 1
    CONTEXT = 2
    PRIVATE = 3


@dataclass(frozen=True, slots=True)
class Tag:
    cls: TagClass
    constructed: bool
    number: int

    def __str__(self) -> str:
        kind = "constructed" if self.constructed else "primitive"
        return f"[{self.cls.name} {self.number}] {kind}"


@dataclass(frozen=True, slots=True)
class TLV:
    """One decoded element: its tag and its content octets."""

    tag: Tag
    value: bytes

    def children(self, max_length: int = DEFAULT_MAX_LENGTH) -> list[TLV]:
        """The elements inside a constructed element (X.690 §8.1.1)."""
        if not self.tag.constructed:
            raise BERError(f"{self.tag} is primitive, it has no inner elements")
        return decode_all(self.value, max_length)


# Universal tags LDAP uses (X.680 §8.4, table 1).
BOOLEAN = Tag(TagClass.UNIVERSAL, False, 1)
INTEGER = Tag(TagClass.UNIVERSAL, False, 2)
OCTET_STRING = Tag(TagClass.UNIVERSAL, False, 4)
ENUMERATED = Tag(TagClass.UNIVERSAL, False, 10)
SEQUENCE = Tag(TagClass.UNIVERSAL, True, 16)


def application(number: int, constructed: bool = True) -> Tag:
    return Tag(TagClass.APPLICATION, constructed, number)


def context(number: int, constructed: bool = False) -> Tag:
    return Tag(TagClass.CONTEXT, constructed, number)


# --- decoding ---------------------------------------------------------------------------


def _read_tag(data: bytes | bytearray, pos: int) -> tuple[Tag, int] | None:
    """The tag at ``pos`` and the offset after it; None if more bytes are needed."""
    if pos >= len(data):
        return None
    first = data[pos]
    cls = TagClass(first >> 6)
    constructed = bool(first & 0x20)
    number = first & 0x1F
    pos += 1
    if number != 0x1F:
        return Tag(cls, constructed, number), pos
    # High-tag-number form, X.690 §8.1.2.4: base-128 digits, bit 8 set on all but the last.
    number = 0
    for i in range(MAX_TAG_OCTETS):
        if pos >= len(data):
            return None
        octet = data[pos]
        pos += 1
        if i == 0 and octet == 0x80:
            raise BERError("tag number has a leading zero digit (X.690 §8.1.2.4.2 c)")
        number = (number << 7) | (octet & 0x7F)
        if not octet & 0x80:
            return Tag(cls, constructed, number), pos
    raise BERError(f"tag number longer than {MAX_TAG_OCTETS} octets")


def _read_length(data: bytes | bytearray, pos: int, max_length: int) -> tuple[int, int] | None:
    """The definite length at ``pos`` and the offset after it; None if incomplete."""
    if pos >= len(data):
        return None
    first = data[pos]
    pos += 1
    if first < 0x80:  # short form, X.690 §8.1.3.4
        length = first
    elif first == 0x80:
        raise BERError("indefinite length (X.690 §8.1.3.6) is not allowed in LDAP (RFC 4511 §5.1)")
    elif first == 0xFF:
        raise BERError("length octet 0xFF is reserved (X.690 §8.1.3.5 c)")
    else:  # long form, X.690 §8.1.3.5
        count = first & 0x7F
        if count > MAX_LENGTH_OCTETS:
            raise BERError(f"length field of {count} octets (an element far beyond any cap)")
        if pos + count > len(data):
            return None
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if length > max_length:
        raise BERError(f"element of {length} bytes exceeds the cap of {max_length} bytes")
    return length, pos


def read_header(
    data: bytes | bytearray, max_length: int = DEFAULT_MAX_LENGTH
) -> tuple[Tag, int, int] | None:
    """Tag, content length and header size of the element starting ``data``; None while the
    header is incomplete. Raises :class:`BERError` for a malformed or oversize header."""
    tag_end = _read_tag(data, 0)
    if tag_end is None:
        return None
    tag, pos = tag_end
    length_end = _read_length(data, pos, max_length)
    if length_end is None:
        return None
    length, pos = length_end
    return tag, length, pos


def read_tlv(
    data: bytes | bytearray, max_length: int = DEFAULT_MAX_LENGTH
) -> tuple[TLV, int] | None:
    """The first complete element of ``data`` and the bytes it used; None while incomplete."""
    header = read_header(data, max_length)
    if header is None:
        return None
    tag, length, start = header
    end = start + length
    if end > len(data):
        return None
    return TLV(tag, bytes(data[start:end])), end


def decode_all(data: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> list[TLV]:
    """Every element of ``data``, which must hold only complete elements."""
    out: list[TLV] = []
    pos = 0
    while pos < len(data):
        got = read_tlv(data[pos:], max_length)
        if got is None:
            raise BERError(f"truncated element at offset {pos} of {len(data)}")
        tlv, used = got
        out.append(tlv)
        pos += used
    return out


def decode_integer(value: bytes) -> int:
    """Content octets of an INTEGER or ENUMERATED, X.690 §8.3 (two's complement)."""
    if not value:
        raise BERError("INTEGER with no content octets (X.690 §8.3.1)")
    if len(value) > 8:
        raise BERError(f"INTEGER of {len(value)} octets is larger than LDAP ever uses")
    return int.from_bytes(value, "big", signed=True)


# --- encoding ---------------------------------------------------------------------------


def encode_tag(tag: Tag) -> bytes:
    first = (tag.cls << 6) | (0x20 if tag.constructed else 0)
    if tag.number < 0x1F:
        return bytes([first | tag.number])
    digits = [tag.number & 0x7F]
    n = tag.number >> 7
    while n:
        digits.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes([first | 0x1F, *reversed(digits)])


def encode_length(length: int) -> bytes:
    """The minimal definite length (DER, X.690 §10.1)."""
    if length < 0:
        raise ValueError("negative length")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode(tag: Tag, value: bytes) -> bytes:
    return encode_tag(tag) + encode_length(len(value)) + value


def encode_integer(n: int, tag: Tag = INTEGER) -> bytes:
    """Minimal two's complement content octets (X.690 §8.3.2)."""
    size = max(1, (n + (n < 0)).bit_length() // 8 + 1)
    return encode(tag, n.to_bytes(size, "big", signed=True))


def encode_sequence(*elements: bytes, tag: Tag = SEQUENCE) -> bytes:
    return encode(tag, b"".join(elements))


__all__ = [
    "BOOLEAN",
    "DEFAULT_MAX_LENGTH",
    "ENUMERATED",
    "INTEGER",
    "OCTET_STRING",
    "SEQUENCE",
    "TLV",
    "BERError",
    "Tag",
    "TagClass",
    "application",
    "context",
    "decode_all",
    "decode_integer",
    "encode",
    "encode_integer",
    "encode_length",
    "encode_sequence",
    "encode_tag",
    "read_header",
    "read_tlv",
]
