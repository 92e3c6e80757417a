"""The capped BER/DER codec used for LDAP (src/tlswatch/protocols/ber.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlswatch.protocols import ber
from tlswatch.protocols.ber import BERError, Tag, TagClass

# A StartTLS ExtendedResponse as slapd 2.5 sent it (captured from the test's slapd).
SLAPD_SUCCESS = bytes.fromhex("300c02010178070a010004000400")


def test_decodes_a_recorded_ldap_message_whole_and_byte_by_byte() -> None:
    """read_tlv returns None for every strict prefix of a message and the whole element
    once complete, with the tags and content slapd sent."""
    for i in range(len(SLAPD_SUCCESS)):
        assert ber.read_tlv(SLAPD_SUCCESS[:i]) is None
    tlv, used = ber.read_tlv(SLAPD_SUCCESS + b"\x30") or (None, 0)
    assert tlv is not None and used == len(SLAPD_SUCCESS)
    assert tlv.tag == ber.SEQUENCE
    message_id, op = tlv.children()
    assert message_id.tag == ber.INTEGER and ber.decode_integer(message_id.value) == 1
    assert op.tag == Tag(TagClass.APPLICATION, True, 24)
    code, dn, diag = op.children()
    assert (code.tag, code.value, dn.value, diag.value) == (ber.ENUMERATED, b"\x00", b"", b"")


@pytest.mark.parametrize(
    ("octet", "tag"),
    [
        (0x02, Tag(TagClass.UNIVERSAL, False, 2)),
        (0x30, Tag(TagClass.UNIVERSAL, True, 16)),
        (0x78, Tag(TagClass.APPLICATION, True, 24)),
        (0x80, Tag(TagClass.CONTEXT, False, 0)),
        (0x8A, Tag(TagClass.CONTEXT, False, 10)),
        (0xA3, Tag(TagClass.CONTEXT, True, 3)),
        (0xC5, Tag(TagClass.PRIVATE, False, 5)),
    ],
)
def test_tag_classes_and_constructed_bit(octet: int, tag: Tag) -> None:
    """The identifier octet's class bits, constructed bit and number (X.690 §8.1.2)."""
    tlv, used = ber.read_tlv(bytes([octet, 1, 0x41])) or (None, 0)
    assert tlv is not None and tlv.tag == tag and tlv.value == b"A" and used == 3
    assert ber.encode_tag(tag) == bytes([octet])


def test_high_tag_number_form() -> None:
    """Tag numbers >= 31 use base-128 digits after 0x1F (X.690 §8.1.2.4)."""
    tlv, _ = ber.read_tlv(bytes([0x5F, 0x81, 0x00, 0x00])) or (None, 0)
    assert tlv is not None and tlv.tag == Tag(TagClass.APPLICATION, False, 128)
    assert ber.encode_tag(Tag(TagClass.APPLICATION, False, 128)) == bytes([0x5F, 0x81, 0x00])
    assert ber.encode_tag(Tag(TagClass.CONTEXT, False, 31)) == bytes([0x9F, 0x1F])


def test_high_tag_number_with_leading_zero_digit_is_rejected() -> None:
    """A 0x80 first subsequent octet is a non-minimal tag (X.690 §8.1.2.4.2 c)."""
    with pytest.raises(BERError, match="leading zero"):
        ber.read_tlv(bytes([0x1F, 0x80, 0x01, 0x00]))


def test_overlong_tag_number_is_rejected() -> None:
    """More than four tag-number octets is refused before any content is buffered."""
    with pytest.raises(BERError, match="tag number longer"):
        ber.read_tlv(bytes([0x1F, 0x81, 0x81, 0x81, 0x81, 0x01]))


def test_long_form_and_non_minimal_lengths_are_accepted() -> None:
    """Long-form lengths, including the non-minimal 4-octet form Active Directory sends
    (``84 00 00 00 0c``), decode to the same element."""
    for header in (b"\x04\x03", b"\x04\x81\x03", b"\x04\x84\x00\x00\x00\x03"):
        tlv, used = ber.read_tlv(header + b"abc") or (None, 0)
        assert tlv is not None and tlv.value == b"abc" and used == len(header) + 3
    value = bytes(300)
    assert ber.encode(ber.OCTET_STRING, value)[:4] == b"\x04\x82\x01\x2c"


def test_indefinite_length_is_rejected() -> None:
    """The indefinite form (0x80) is not allowed in LDAP (RFC 4511 §5.1)."""
    with pytest.raises(BERError, match="indefinite"):
        ber.read_tlv(b"\x30\x80\x02\x01\x01\x00\x00")


def test_reserved_length_octet_is_rejected() -> None:
    """0xFF as the first length octet is reserved (X.690 §8.1.3.5 c)."""
    with pytest.raises(BERError, match="reserved"):
        ber.read_tlv(b"\x30\xff")


def test_oversize_length_is_rejected_from_the_header_alone() -> None:
    """A declared length over the cap fails as soon as the header is read: nothing of the
    announced content needs to arrive, so a hostile length costs no memory."""
    with pytest.raises(BERError, match="exceeds the cap"):
        ber.read_tlv(b"\x30\x84\x7f\xff\xff\xff", max_length=65536)
    with pytest.raises(BERError, match="exceeds the cap"):
        ber.read_tlv(b"\x04\x82\x01\x01", max_length=256)
    with pytest.raises(BERError, match="length field of 9 octets"):
        ber.read_tlv(b"\x04\x89" + bytes(9))


def test_children_of_a_primitive_and_truncated_children_are_errors() -> None:
    """Only constructed elements have children, and they must be complete."""
    prim = ber.TLV(ber.OCTET_STRING, b"\x02\x01\x01")
    with pytest.raises(BERError, match="primitive"):
        prim.children()
    with pytest.raises(BERError, match="truncated"):
        ber.TLV(ber.SEQUENCE, b"\x02\x05\x01").children()


def test_integers() -> None:
    """INTEGER content is two's complement, minimal when encoded (X.690 §8.3)."""
    assert ber.encode_integer(1) == b"\x02\x01\x01"
    assert ber.encode_integer(128) == b"\x02\x02\x00\x80"
    assert ber.encode_integer(-129) == b"\x02\x02\xff\x7f"
    assert ber.decode_integer(b"\xff") == -1
    with pytest.raises(BERError, match="no content"):
        ber.decode_integer(b"")
    with pytest.raises(BERError, match="larger than LDAP"):
        ber.decode_integer(bytes(9))


tags = st.builds(
    Tag,
    st.sampled_from(list(TagClass)),
    st.booleans(),
    st.integers(min_value=0, max_value=(1 << 28) - 1),
)


@given(tags, st.binary(max_size=600))
def test_round_trip(tag: Tag, value: bytes) -> None:
    """encode then read_tlv gives back the tag and value and uses every byte; every strict
    prefix is reported incomplete, never an error."""
    encoded = ber.encode(tag, value)
    got = ber.read_tlv(encoded)
    assert got is not None
    tlv, used = got
    assert (tlv.tag, tlv.value, used) == (tag, value, len(encoded))
    for cut in {1, len(encoded) // 2, len(encoded) - 1}:
        if 0 < cut < len(encoded):
            assert ber.read_tlv(encoded[:cut]) is None


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_integer_round_trip_is_minimal(n: int) -> None:
    """Integers survive encoding, and the encoding has no redundant leading octet."""
    encoded = ber.encode_integer(n)
    tlv, _ = ber.read_tlv(encoded) or (None, 0)
    assert tlv is not None and ber.decode_integer(tlv.value) == n
    if len(tlv.value) > 1:
        first, second = tlv.value[0], tlv.value[1]
        assert not (first == 0x00 and second < 0x80)
        assert not (first == 0xFF and second >= 0x80)


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=1 << 16))
def test_arbitrary_bytes_decode_or_raise_bererror_only(data: bytes, cap: int) -> None:
    """Any input gives an element within the cap, None (incomplete) or BERError: never
    another exception, never an element longer than the cap."""
    try:
        got = ber.read_tlv(data, max_length=cap)
    except BERError:
        return
    if got is not None:
        tlv, used = got
        assert len(tlv.value) <= cap and used <= len(data)
