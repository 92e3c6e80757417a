"""load_anchors answers repeated calls from memory (issue 6: a scan asks twice per
endpoint) but a long-running daemon still sees a trust bundle edited on disk, within
MTIME_TTL, and a changed SSL_CERT_FILE at once."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.verdict_pki import make
from tlswatch.x509 import trust

ROOT_A = make("Reload Root A", ca=True)
ROOT_B = make("Reload Root B", ca=True)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(trust, "time", SimpleNamespace(monotonic=c.monotonic))
    return c


def _write(path: Path, pem: bytes, mtime_s: int) -> None:
    path.write_bytes(pem)
    os.utime(path, ns=(mtime_s * 10**9, mtime_s * 10**9))


def _subjects(anchors: trust.Anchors) -> set[str]:
    return {c.subject.rfc4514_string().split(",")[0] for c in anchors.certs}


def test_a_rewritten_ca_file_is_picked_up(tmp_path: Path, clock: _Clock) -> None:
    ca = tmp_path / "ca.pem"
    _write(ca, ROOT_A.pem, 1_700_000_000)
    first = trust.load_anchors("none", str(ca))
    assert _subjects(first) == {"CN=Reload Root A"}

    _write(ca, ROOT_B.pem, 1_700_000_100)
    # within MTIME_TTL the file is not looked at again: the same anchors
    clock.now += trust.MTIME_TTL / 2
    assert trust.load_anchors("none", str(ca)) is first
    # after it, the new content is read
    clock.now += trust.MTIME_TTL
    assert _subjects(trust.load_anchors("none", str(ca))) == {"CN=Reload Root B"}


def test_a_removed_and_restored_ca_file(tmp_path: Path, clock: _Clock) -> None:
    ca = tmp_path / "ca.pem"
    _write(ca, ROOT_A.pem, 1_700_000_000)
    assert not trust.load_anchors("none", str(ca)).errors
    ca.unlink()
    clock.now += trust.MTIME_TTL * 2
    gone = trust.load_anchors("none", str(ca))
    assert gone.errors and not gone.certs
    _write(ca, ROOT_B.pem, 1_700_000_200)
    clock.now += trust.MTIME_TTL * 2
    assert _subjects(trust.load_anchors("none", str(ca))) == {"CN=Reload Root B"}


def test_ssl_cert_file_change_takes_effect_at_once(
    tmp_path: Path, clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = tmp_path / "a.pem"
    b = tmp_path / "b.pem"
    # the same mtime: the anchors are keyed by the bundle's path, not only by its mtime
    _write(a, ROOT_A.pem, 1_700_000_000)
    _write(b, ROOT_B.pem, 1_700_000_000)
    monkeypatch.setenv("SSL_CERT_FILE", str(a))
    assert _subjects(trust.load_anchors("system")) == {"CN=Reload Root A"}
    monkeypatch.setenv("SSL_CERT_FILE", str(b))
    assert _subjects(trust.load_anchors("system")) == {"CN=Reload Root B"}


def test_the_memo_stays_bounded(tmp_path: Path, clock: _Clock) -> None:
    for i in range(3 * trust._MAX_RECENT):
        trust.load_anchors("none", str(tmp_path / f"missing-{i}.pem"))
    assert len(trust._recent) <= trust._MAX_RECENT
