"""Scanning with several processes: one event loop each, one shared stream of work.

A TLS handshake costs the client real CPU (key exchange, signature checks, then parsing and
verifying the chain), so one event loop saturates one core long before the network is busy.
:class:`WorkerPool` forks ``workers - 1`` children *before* any event loop exists (forking a
running loop is unsafe); the parent runs the last share itself. Work is dealt out on demand
(each process asks for more when its own queue runs low), so a slow shard never holds the
rest back, and results stream back in order of completion::

    pool = WorkerPool(handle, fallback, workers=2, concurrency=100)   # forks here
    async for batch in pool.results(items):                           # in asyncio.run(...)
        ...

``handle(item)`` runs in whichever process took the item and must return a picklable
record; ``fallback(item, exc)`` turns an exception escaping ``handle`` (a bug), or the death
of the child that held the item, into a record, so every item yields exactly one record.

Memory stays flat however long the stream is: the parent holds at most the items it has
handed out and not yet seen answered (bounded by the children's requests), each child at
most ``2 × its concurrency``.

Parent and child talk over a socketpair in length-prefixed pickle frames (pickle is safe
here: both ends are this program, one forked from the other)::

    child  → parent   ("want", k) | ("results", [(seq, record), …]) | ("done",)
    parent → child    ("items", [(seq, item), …]) | ("end",)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import socket
import struct
import sys
import traceback
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

ItemT = TypeVar("ItemT")
RecordT = TypeVar("RecordT")

_HEADER = struct.Struct("!I")
#: cap on one frame: a batch of records; anything larger is a bug, not data
MAX_FRAME = 256 << 20


class WorkerLost(Exception):
    """A child process died with items it had not answered."""


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _frame(obj: object) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def _recv(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise WorkerLost(f"frame of {size} bytes from a worker exceeds {MAX_FRAME}")
    return pickle.loads(await reader.readexactly(size))  # noqa: S301 - our own child


class _Driver(Generic[ItemT, RecordT]):
    """Keeps up to ``concurrency`` handlers running in this process's loop, pulling items
    with ``fetch`` (which may await) and handing records to ``emit``. Completion uses done
    callbacks rather than ``asyncio.wait`` over the whole pending set (O(1) per item)."""

    def __init__(
        self,
        handle: Callable[[ItemT], Awaitable[RecordT]],
        fallback: Callable[[ItemT, BaseException], RecordT],
        concurrency: int,
        fetch: Callable[[int], Awaitable[list[tuple[int, ItemT]] | None]],
        emit: Callable[[int, RecordT], None],
    ) -> None:
        self.handle = handle
        self.fallback = fallback
        self.concurrency = concurrency
        self.fetch = fetch
        self.emit = emit
        self.buffer: deque[tuple[int, ItemT]] = deque()
        self.running = 0
        self.ended = False
        self.asking = False
        self.finished: asyncio.Future[None] | None = None

    async def run(self) -> None:
        self.finished = asyncio.get_running_loop().create_future()
        self._refill()
        await self.finished

    async def _one(self, seq: int, item: ItemT) -> None:
        try:
            record = await self.handle(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handlers never raise; a bug becomes a record
            record = self.fallback(item, exc)
        self.emit(seq, record)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.running -= 1
        if not task.cancelled() and task.exception() is not None:  # pragma: no cover - emit bug
            assert self.finished is not None
            if not self.finished.done():
                self.finished.set_exception(task.exception())  # type: ignore[arg-type]
            return
        self._refill()

    def _refill(self) -> None:
        while self.running < self.concurrency and self.buffer:
            seq, item = self.buffer.popleft()
            self.running += 1
            asyncio.ensure_future(self._one(seq, item)).add_done_callback(self._done)
        if not self.ended and not self.asking and len(self.buffer) < self.concurrency:
            self.asking = True
            asyncio.ensure_future(self._ask()).add_done_callback(self._asked)
        elif self.ended and not self.buffer and not self.running and not self.asking:
            assert self.finished is not None
            if not self.finished.done():
                self.finished.set_result(None)

    async def _ask(self) -> None:
        batch = await self.fetch(self.concurrency)
        if batch is None:
            self.ended = True
        else:
            self.buffer.extend(batch)

    def _asked(self, task: asyncio.Task[None]) -> None:
        self.asking = False
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self.ended = True  # the parent went away: finish what is running, take no more
            self.buffer.clear()
        self._refill()


async def _child_main(
    sock: socket.socket,
    handle: Callable[[ItemT], Awaitable[RecordT]],
    fallback: Callable[[ItemT, BaseException], RecordT],
    concurrency: int,
) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    loop = asyncio.get_running_loop()
    out: list[tuple[int, RecordT]] = []
    flush_scheduled = False

    def flush() -> None:
        nonlocal flush_scheduled
        flush_scheduled = False
        if out:
            writer.write(_frame(("results", out[:])))
            out.clear()

    def emit(seq: int, record: RecordT) -> None:
        # Records finishing in the same loop iteration travel in one frame.
        nonlocal flush_scheduled
        out.append((seq, record))
        if not flush_scheduled:
            flush_scheduled = True
            loop.call_soon(flush)

    async def fetch(k: int) -> list[tuple[int, ItemT]] | None:
        writer.write(_frame(("want", k)))
        await writer.drain()
        msg = await _recv(reader)
        if msg[0] == "end":
            return None
        items: list[tuple[int, ItemT]] = msg[1]
        return items

    await _Driver(handle, fallback, concurrency, fetch, emit).run()
    with contextlib.suppress(ConnectionError):  # the parent may be gone (interrupted)
        flush()
        writer.write(_frame(("done",)))
        await writer.drain()
    writer.close()


class WorkerPool(Generic[ItemT, RecordT]):
    """``workers`` processes (this one included) running ``handle`` over one item stream."""

    def __init__(
        self,
        handle: Callable[[ItemT], Awaitable[RecordT]],
        fallback: Callable[[ItemT, BaseException], RecordT],
        *,
        workers: int,
        concurrency: int,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self.handle = handle
        self.fallback = fallback
        #: the event loop each child runs on (None: asyncio's default); the parent's is
        #: whatever runs :meth:`results`
        self.loop_factory = loop_factory
        #: never more processes than probes allowed in flight
        self.workers = max(1, min(workers, concurrency))
        #: in flight per process: the shares add up to exactly what the user asked for
        #: (the parent takes the last, smallest share)
        shares = [
            concurrency // self.workers + (i < concurrency % self.workers)
            for i in range(self.workers)
        ]
        self.per_process = max(1, shares[-1])
        self._children: list[tuple[int, socket.socket]] = []
        for share in shares[:-1]:
            self._fork(share)

    def _fork(self, share: int) -> None:
        parent_end, child_end = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child; measured through the CLI tests
            parent_end.close()
            for _, sock in self._children:
                sock.close()
            code = 0
            try:
                with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                    runner.run(_child_main(child_end, self.handle, self.fallback, share))
            except KeyboardInterrupt:
                code = 130
            except BaseException:  # report, then leave without parent cleanup
                traceback.print_exc()
                code = 70
            finally:
                os._exit(code)  # never run the parent's atexit handlers or flush its buffers
        child_end.close()
        self._children.append((pid, parent_end))

    async def results(self, items: Iterable[ItemT]) -> AsyncIterator[list[RecordT]]:
        """Batches of records, in order of completion, one record per item."""
        source: Iterator[tuple[int, ItemT]] = enumerate(items)
        exhausted = False
        queue: asyncio.Queue[list[RecordT] | None] = asyncio.Queue()

        def take(k: int) -> list[tuple[int, ItemT]]:
            nonlocal exhausted
            batch: list[tuple[int, ItemT]] = []
            while len(batch) < k and not exhausted:
                try:
                    batch.append(next(source))
                except StopIteration:
                    exhausted = True
            return batch

        async def serve(sock: socket.socket) -> None:
            outstanding: dict[int, ItemT] = {}
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                while True:
                    msg = await _recv(reader)
                    if msg[0] == "want":
                        batch = take(int(msg[1]))
                        outstanding.update(batch)
                        writer.write(_frame(("items", batch) if batch else ("end",)))
                    elif msg[0] == "results":
                        for seq, _ in msg[1]:
                            outstanding.pop(seq, None)
                        queue.put_nowait([record for _, record in msg[1]])
                    else:  # "done"
                        break
            except (asyncio.IncompleteReadError, ConnectionError, WorkerLost) as exc:
                lost = WorkerLost(f"worker process died ({type(exc).__name__})")
                if outstanding:
                    queue.put_nowait([self.fallback(item, lost) for item in outstanding.values()])
            finally:
                writer.close()
                queue.put_nowait(None)

        async def local_fetch(k: int) -> list[tuple[int, ItemT]] | None:
            return take(k) or None

        async def local() -> None:
            done: list[RecordT] = []

            def emit(_seq: int, record: RecordT) -> None:
                if not done:
                    asyncio.get_running_loop().call_soon(flush)
                done.append(record)

            def flush() -> None:
                queue.put_nowait(done[:])
                done.clear()

            try:
                await _Driver(self.handle, self.fallback, self.per_process, local_fetch, emit).run()
            finally:
                if done:
                    flush()
                queue.put_nowait(None)

        tasks = [asyncio.ensure_future(serve(sock)) for _, sock in self._children]
        tasks.append(asyncio.ensure_future(local()))
        live = len(tasks)
        finished = False
        try:
            while live:
                batch = await queue.get()
                if batch is None:
                    live -= 1
                elif batch:
                    yield batch
            for task in tasks:
                task.result()  # surface a bug in the parent's own share
            finished = True
        finally:
            for task in tasks:
                task.cancel()
            self.close(graceful=finished)

    def close(self, graceful: bool = False) -> None:
        """Reap the children. After a complete run they have said "done" and are exiting,
        so wait for them; otherwise (an error, an interrupt) stop them first."""
        children, self._children = self._children, []
        for pid, sock in children:
            sock.close()
            if not graceful:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


__all__ = ["WorkerLost", "WorkerPool", "default_workers"]
