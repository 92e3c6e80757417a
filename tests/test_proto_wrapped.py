"""Sans-IO parsers of the wrapped and remote-access protocols: recorded exchanges fed
whole and byte by byte, framers round-tripped, and hypothesis over arbitrary cuts and
arbitrary bytes (never an exception, always a verdict or "need more")."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.servers import tds as tds_script
from tests.support.transcript import FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols.auto import NEED_MORE, classify
from tlswatch.protocols.base import Failed, NegotiatorContext, Ready, Send
from tlswatch.protocols.mssql import MSSQLNegotiator, parse_prelogin, prelogin_request
from tlswatch.protocols.nats import NATSNegotiator
from tlswatch.protocols.openvpn import OpenVPNNegotiator
from tlswatch.protocols.rdp import RDPNegotiator, connection_request
from tlswatch.protocols.vnc import VNCNegotiator
from tlswatch.tls.framing import FramingError
from tlswatch.tls.openvpn import (
    P_ACK_V1,
    P_CONTROL_HARD_RESET_SERVER_V2,
    P_CONTROL_V1,
    ControlChannel,
    ControlPacket,
    TLSAuth,
    decode_packet,
    encode_packet,
    parse_static_key,
)
from tlswatch.tls.tds import TYPE_PRELOGIN, TDSFramer
from tlswatch.tls.tds import encode_packet as tds_packet

# --- recorded exchanges (server side), from the real servers of tests/servers ----------

# xrdp 0.9.21 (security_layer=tls): X.224 Connection Confirm with RDP_NEG_RSP selecting TLS
XRDP_CC = bytes.fromhex("030000130ed000001234000201080001000000")
# Xtigervnc 1.12, -SecurityTypes X509None
TIGERVNC = [b"RFB 003.008\n", b"\x01\x13", b"\x00\x02", b"\x00", b"\x01\x00\x00\x01\x04", b"\x01"]
# nats-server 2.9.10 --tls (INFO abridged to the fields that matter)
NATS_INFO = (
    b'INFO {"server_id":"NBU5","server_name":"NBU5","version":"2.9.10","proto":1,'
    b'"host":"127.0.0.1","port":4222,"headers":true,"tls_required":true,"max_payload":1048576}'
    b"\r\n"
)
# the PRELOGIN answer (ENCRYPT_ON, version 16.0.1000) of the scripted TDS server, which
# FreeTDS' tsql accepts (tests/servers/tds.py proves it at session start)
PRELOGIN_ANSWER = tds_script.packet(4, tds_script.prelogin_answer(1))


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_rdp_confirm_selecting_tls(feeding: str) -> None:
    """xrdp's Connection Confirm selecting TLS leads to TLS, whole or byte by byte."""
    out = drive(RDPNegotiator, [XRDP_CC], feeding)
    assert out.sent == [connection_request()]
    assert isinstance(out.final, Ready) and out.final.info["selected_protocol"] == "TLS"
    assert not out.extra


def test_rdp_request_bytes() -> None:
    """The CR is TPKT(19) + X.224 CR (LI 14) + RDP_NEG_REQ asking for TLS | CredSSP."""
    assert connection_request() == bytes.fromhex("030000130ee000000000000100080003000000")


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize(
    ("code", "expected"),
    [(2, "upgrade_not_offered"), (5, "upgrade_refused"), (99, "upgrade_refused")],
)
def test_rdp_negotiation_failure(feeding: str, code: int, expected: str) -> None:
    """RDP_NEG_FAILURE codes map to their classes with the code's name."""
    cc = bytes.fromhex("030000130ed00000123400") + struct.pack("<BBHI", 3, 0, 8, code)
    cls, message = failure_of(drive(RDPNegotiator, [cc], feeding))
    assert cls == expected and "RDP_NEG_FAILURE" in message


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_vnc_tigervnc_x509none(feeding: str) -> None:
    """TigerVNC's RFB 3.8 + VeNCrypt 0.2 + X509None dialogue: our answers, then TLS."""
    out = drive(VNCNegotiator, TIGERVNC, feeding)
    assert out.sent == [b"RFB 003.008\n", b"\x13", b"\x00\x02", b"\x00\x00\x01\x04"]
    assert isinstance(out.final, Ready) and out.final.info["vencrypt_subtype"] == "X509None"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_vnc_anonymous_only(feeding: str) -> None:
    """Only TLSNone/TLSVnc offered: upgrade_not_offered, "no certificate"."""
    server = [
        b"RFB 003.008\n",
        b"\x01\x13",
        b"\x00\x02\x00",
        b"\x02\x00\x00\x01\x01\x00\x00\x01\x02",
    ]
    cls, message = failure_of(drive(VNCNegotiator, server, feeding))
    assert cls == "upgrade_not_offered" and "no certificate" in message


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_vnc_rfb33_dictates(feeding: str) -> None:
    """An RFB 3.3 server dictating VNC Authentication: no VeNCrypt."""
    out = drive(VNCNegotiator, [b"RFB 003.003\n", b"\x00\x00\x00\x02"], feeding)
    assert out.sent == [b"RFB 003.003\n"]
    assert failure_of(out)[0] == "upgrade_not_offered"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_nats_info(feeding: str) -> None:
    """nats-server's INFO with tls_required: TLS right after, nothing sent in plaintext."""
    out = drive(NATSNegotiator, [NATS_INFO], feeding)
    assert out.sent == []
    assert isinstance(out.final, Ready) and out.final.info["version"] == "2.9.10"


def test_nats_plaintext_after_info_is_injection() -> None:
    """Bytes after INFO in the same read, before TLS (e.g. a PING), are refused as
    injection (byte by byte the driver has already started TLS: they would reach the
    engine as non-TLS and fail there)."""
    cls, _ = failure_of(drive(NATSNegotiator, [NATS_INFO + b"PING\r\n"], "whole"))
    assert cls == "protocol_error"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_mssql_prelogin(feeding: str) -> None:
    """SQL Server's PRELOGIN answer with ENCRYPT_ON leads to TLS; version decoded."""
    out = drive(MSSQLNegotiator, [PRELOGIN_ANSWER], feeding)
    assert out.sent == [prelogin_request()]
    assert isinstance(out.final, Ready)
    assert out.final.info == {"encryption": "ENCRYPT_ON", "server_version": "16.0.1000"}


def test_mssql_request_round_trips() -> None:
    """Our PRELOGIN parses back: ENCRYPT_ON, empty instance, no MARS."""
    options = parse_prelogin(prelogin_request()[8:])
    assert options[1] == b"\x01" and options[2] == b"\x00" and options[4] == b"\x00"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_mssql_not_sup(feeding: str) -> None:
    """ENCRYPT_NOT_SUP gives upgrade_not_offered."""
    answer = tds_script.packet(4, tds_script.prelogin_answer(2))
    cls, message = failure_of(drive(MSSQLNegotiator, [answer], feeding))
    assert cls == "upgrade_not_offered" and "ENCRYPT_NOT_SUP" in message


def test_tds_framer_wraps_until_handshake_completes() -> None:
    """TLS bytes go in PRELOGIN packets (split at 4096), and raw once the handshake is done;
    the server's packets are unwrapped whole or byte by byte."""
    framer = TDSFramer(None)
    wrapped = framer.wrap(b"x" * 5000)
    assert wrapped[0] == TYPE_PRELOGIN and wrapped[1] == 0  # first of two: no EOM
    assert len(wrapped) == 5000 + 16
    incoming = tds_packet(TYPE_PRELOGIN, b"\x16\x03\x03hello") + tds_packet(4, b"world")
    assert framer.unwrap(incoming) == b"\x16\x03\x03helloworld"
    bytewise = TDSFramer(None)
    assert b"".join(bytewise.unwrap(incoming[i : i + 1]) for i in range(len(incoming))) == (
        b"\x16\x03\x03helloworld"
    )
    framer.handshake_complete()
    assert framer.wrap(b"\x15\x03\x03") == b"\x15\x03\x03"
    with pytest.raises(FramingError):
        TDSFramer(None).unwrap(b"\x12\x01\xff\xff\x00\x00\x01\x00")


# --- OpenVPN ---------------------------------------------------------------------------------

KEY_FILE = (
    "#\n# 2048 bit OpenVPN static key\n#\n-----BEGIN OpenVPN Static key V1-----\n"
    + "\n".join(bytes(range(i * 16, i * 16 + 16)).hex() for i in range(16))
    + "\n-----END OpenVPN Static key V1-----\n"
)


def test_static_key_and_directions() -> None:
    """Key direction 1 signs with the second HMAC key and checks with the first; a packet
    signed by direction 0 verifies under direction 1 (that is how client and server pair)."""
    key = parse_static_key(KEY_FILE)
    assert key == bytes(range(256))
    server, client = (
        TLSAuth(key, 0, wall_clock=lambda: 1.0),
        TLSAuth(key, 1, wall_clock=lambda: 1.0),
    )
    p = ControlPacket(P_CONTROL_V1, 0, b"S" * 8, (3,), b"C" * 8, 4, b"tls")
    raw = encode_packet(p, server)
    assert decode_packet(raw, client) == p
    with pytest.raises(FramingError, match="HMAC"):
        decode_packet(raw, TLSAuth(key, 0))
    with pytest.raises(ValueError):
        parse_static_key(
            "-----BEGIN OpenVPN Static key V1-----\nzz\n-----END OpenVPN Static key V1-----"
        )


def _server_packets(client_sid: bytes, n: int) -> bytes:
    out = b""
    reset = ControlPacket(P_CONTROL_HARD_RESET_SERVER_V2, 0, b"S" * 8, (0,), client_sid, 0)
    out += _framed(reset)
    for i in range(1, n + 1):
        out += _framed(
            ControlPacket(P_CONTROL_V1, 0, b"S" * 8, (), None, i, b"\x16\x03\x03" + bytes([i]))
        )
    return out


def _framed(p: ControlPacket) -> bytes:
    raw = encode_packet(p)
    return len(raw).to_bytes(2, "big") + raw


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_openvpn_reset_exchange(feeding: str) -> None:
    """Our reset (packet id 0, no acks) and the server's reset lead to TLS; the ack of the
    server's reset is owed, to ride on the ClientHello."""
    neg = OpenVPNNegotiator(NegotiatorContext("h", 1, None), clock=lambda: 0.0)
    (send,) = neg.initiate()
    assert isinstance(send, Send)
    ours = decode_packet(send.data[2:])
    assert ours.opcode == 7 and ours.packet_id == 0 and ours.acks == ()
    data = _server_packets(ours.session_id, 0)
    events = []
    for piece in [data] if feeding == "whole" else [data[i : i + 1] for i in range(len(data))]:
        events += neg.receive_data(piece)
    assert len(events) == 1 and isinstance(events[0], Ready)
    neg.channel.send_tls(b"\x16\x03\x01hello")
    first = decode_packet(neg.channel.output()[2:])
    assert first.opcode == P_CONTROL_V1 and first.packet_id == 1 and first.acks == (0,)


def test_openvpn_channel_reorders_and_acks_duplicates() -> None:
    """Out-of-order packets are delivered in order; duplicates are re-acked, not re-delivered."""
    ch = ControlChannel(session_id=b"C" * 8, clock=lambda: 0.0)
    ch.send(7)
    ch.output()
    reset = _framed(ControlPacket(P_CONTROL_HARD_RESET_SERVER_V2, 0, b"S" * 8, (0,), b"C" * 8, 0))
    p = [_framed(ControlPacket(P_CONTROL_V1, 0, b"S" * 8, (), None, i, bytes([i]))) for i in (1, 2)]
    assert [x.packet_id for x in ch.receive(reset + p[1])] == [0]
    assert [x.payload for x in ch.receive(p[0] + p[0])] == [b"\x01", b"\x02"]
    acks = decode_packet(ch.output()[2:])
    assert acks.opcode == P_ACK_V1 and set(acks.acks) == {0, 1, 2}


def test_openvpn_udp_retransmission_is_bounded() -> None:
    """Unacked packets are resent with doubling intervals, then the channel gives up."""
    now = [0.0]
    ch = ControlChannel(retransmit=True, clock=lambda: now[0], initial_rto=1.0, max_sends=3)
    ch.send(7)
    ch.output()
    times = []
    with pytest.raises(FramingError) as err:
        for _ in range(10):
            due = ch.next_timer()
            assert due is not None
            now[0] = due
            times.append(due)
            ch.handle_timer(due)
            assert decode_packet(ch.output()[2:]).packet_id == 0
    assert times == [1.0, 3.0, 7.0]
    assert err.value.code == "upgrade_refused"


# --- auto -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("greeting", "scheme"),
    [
        (b"220 mail.example ESMTP Postfix (Debian/GNU)\r\n", "smtp"),
        (b"220 (vsFTPd 3.0.3)\r\n", "ftp"),
        (b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n", "imap"),
        (b"+OK Dovecot ready.\r\n", "pop3"),
        (b"200 news.example InterNetNews NNRP server INN 2.7.1 ready (posting ok)\r\n", "nntp"),
        (b'"IMPLEMENTATION" "Dovecot Pigeonhole"\r\n', "sieve"),
        (b":irc.example NOTICE * :*** Looking up your hostname...\r\n", "irc"),
        (NATS_INFO, "nats"),
        (b"RFB 003.008\n", "vnc"),
        (b"\x56\x00\x00\x00\x0a11.4.2-MariaDB\x00", "mysql"),
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", None),
    ],
)
def test_classify_greetings(greeting: bytes, scheme: str | None) -> None:
    """Each greeting names its protocol, whole; every strict prefix is NEED_MORE or the same
    answer (byte by byte never decides differently)."""
    assert classify(greeting) == scheme
    for i in range(1, len(greeting)):
        assert classify(greeting[:i]) in (NEED_MORE, scheme)


# --- hypothesis: arbitrary cuts and arbitrary bytes ---------------------------------------

NEGOTIATORS = {
    "rdp": (RDPNegotiator, [XRDP_CC]),
    "vnc": (VNCNegotiator, [b"".join(TIGERVNC)]),
    "nats": (NATSNegotiator, [NATS_INFO]),
    "mssql": (MSSQLNegotiator, [PRELOGIN_ANSWER]),
}


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(NEGOTIATORS)), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_any_cut_gives_the_same_verdict(name: str, cuts: list[int]) -> None:
    """However the server's bytes are cut into reads, the verdict is Ready."""
    make, chunks = NEGOTIATORS[name]
    out = drive_chunks(make, split_at(b"".join(chunks), cuts), eof=False)
    assert isinstance(out.final, Ready)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(NEGOTIATORS)), data=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(name: str, data: bytes) -> None:
    """Arbitrary server bytes then end of stream: always Ready or a classified Failed."""
    make, _ = NEGOTIATORS[name]
    out = drive_chunks(make, [data] if data else [], eof=True)
    assert isinstance(out.final, Ready | Failed)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_openvpn_channel_arbitrary_bytes(data: bytes) -> None:
    """The control channel either parses or raises FramingError, nothing else."""
    ch = ControlChannel(clock=lambda: 0.0)
    ch.send(7)
    try:
        ch.receive(data)
    except FramingError:
        pass


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200))
def test_classify_arbitrary_bytes(data: bytes) -> None:
    """classify() returns a scheme, NEED_MORE or None for any bytes."""
    assert classify(data) is None or isinstance(classify(data), str)
