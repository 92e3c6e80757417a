"""Which event loop the command line runs on: uvloop when it is installed, else asyncio's.

uvloop is an optional extra (``pip install 'tlswatch[fast]'``). Measured on the 1,000-port
benchmark workload (docs/performance.md, "levers tried"), it saves ≈ 5-10 % of the CPU per
endpoint of ``tlswatch scan``. Only the command line chooses a loop, and only for the loops
it creates itself (``asyncio.Runner(loop_factory=...)``): no global event-loop policy is
installed, so a library caller or a test process keeps whatever loop it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: the values of ``tlswatch scan --loop``
LOOP_CHOICES = ("auto", "asyncio", "uvloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopUnavailable(Exception):
    """``--loop uvloop`` asked for, uvloop not installed."""


def loop_factory(choice: str = "auto") -> LoopFactory:
    """A function making a new loop of the kind ``choice`` names.

    ``asyncio`` is the standard library's own selector loop (what ``asyncio.run`` makes on
    Unix), named explicitly so that it stays that even where some start-up code installed
    another loop policy; ``uvloop`` raises :class:`LoopUnavailable` when uvloop is not
    importable; ``auto`` is uvloop when importable, else ``asyncio``."""
    if choice not in LOOP_CHOICES:
        raise ValueError(f"unknown event loop {choice!r}: one of {', '.join(LOOP_CHOICES)}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise LoopUnavailable(
                    "--loop uvloop: uvloop is not installed (pip install 'tlswatch[fast]')"
                ) from None
        else:
            factory: LoopFactory = uvloop.new_event_loop
            return factory
    return asyncio.SelectorEventLoop


def run(main: Coroutine[Any, Any, T], factory: LoopFactory | None) -> T:
    """``asyncio.run(main)`` on a loop from ``factory`` (None: asyncio's default)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


__all__ = ["LOOP_CHOICES", "LoopFactory", "LoopUnavailable", "loop_factory", "run"]
