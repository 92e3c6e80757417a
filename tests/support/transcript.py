"""Driving a sans-IO negotiator with recorded server bytes, whole or byte by byte.

STYLE.md rule 4: every parser test feeds its input whole, then byte by byte. :func:`drive`
does both the same way, so a test states the transcript once and checks both feedings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tlswatch.protocols.base import Event, Failed, Negotiator, NegotiatorContext, Ready, Send

CTX = NegotiatorContext("server.example", 1, "server.example")

#: how to cut each server chunk: "whole" keeps it, "bytewise" feeds one byte per call
FEEDINGS = ("whole", "bytewise")


@dataclass
class Outcome:
    """Everything a negotiator did for one transcript."""

    sent: list[bytes]
    final: Ready | Failed | None  # None: still waiting for more bytes
    extra: list[Event]  # events after the terminal one (must stay empty)


def pieces(chunk: bytes, feeding: str) -> list[bytes]:
    if feeding == "bytewise":
        return [chunk[i : i + 1] for i in range(len(chunk))]
    return [chunk]


def drive(
    make: Callable[[NegotiatorContext], Negotiator],
    server: Sequence[bytes] | Iterable[bytes],
    feeding: str = "whole",
    eof: bool = False,
) -> Outcome:
    """Run a negotiator over the server's chunks; stop feeding at the first terminal event
    (the driver stops reading then too). ``eof`` then feeds end of stream if still open."""
    negotiator = make(CTX)
    out = Outcome([], None, [])

    def absorb(events: list[Event]) -> None:
        for event in events:
            if out.final is not None:
                out.extra.append(event)
            elif isinstance(event, Send):
                out.sent.append(event.data)
            else:
                out.final = event

    absorb(negotiator.initiate())
    for chunk in server:
        for piece in pieces(chunk, feeding):
            if out.final is not None:
                break
            absorb(negotiator.receive_data(piece))
    if eof and out.final is None:
        absorb(negotiator.receive_data(b""))
    return out


def drive_chunks(
    make: Callable[[NegotiatorContext], Negotiator], chunks: Sequence[bytes], eof: bool = True
) -> Outcome:
    """Feed exactly these chunks (for hypothesis' arbitrary cuts), then end of stream."""
    return drive(make, chunks, "whole", eof)


def failure_of(outcome: Outcome) -> tuple[str, str]:
    """(class, message) of a failed outcome; fails the test when it did not fail."""
    assert isinstance(outcome.final, Failed), f"expected a failure, got {outcome.final!r}"
    return outcome.final.failure.code.value, outcome.final.failure.message


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (sorted, deduplicated, clipped)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
