"""The Python floor: a bare stdlib-asyncio handshake loop, nothing else.

For each port: connect, TLS handshake (no verification), ``getpeercert(binary_form=True)``,
close. No parsing, no verification, no output per endpoint. It prints one JSON line
``{"ok": N, "failed": M}`` so the runner can check it did the work.

    python bench/bare_loop.py --host 127.0.0.1 --ports-file ports.txt [--shard 0/2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import Callable


async def _one(host: str, port: int, ctx: ssl.SSLContext, sem: asyncio.Semaphore) -> bool:
    async with sem:
        try:
            async with asyncio.timeout(10):
                _reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return bool(der)


async def _main(host: str, ports: list[int], concurrency: int) -> dict[str, int]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(concurrency)
    results = await asyncio.gather(*(_one(host, p, ctx, sem) for p in ports))
    ok = sum(results)
    return {"ok": ok, "failed": len(results) - ok}


def cli(run: Callable[[str, list[int], int], dict[str, int]]) -> None:
    """The command line both handshake loops share (this one and floor_loop.py): the ports
    of one shard, ``run(host, ports, concurrency)``, and its counts as one JSON line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ports-file", required=True)
    ap.add_argument("--shard", default="0/1", help="i/n: take every n-th port from i")
    ap.add_argument("--concurrency", type=int, default=100)
    args = ap.parse_args()
    i, n = (int(x) for x in args.shard.split("/"))
    with open(args.ports_file, encoding="ascii") as fh:
        ports = [int(line) for line in fh if line.strip()][i::n]
    sys.stdout.write(json.dumps(run(args.host, ports, args.concurrency)) + "\n")


def main() -> None:
    cli(lambda host, ports, concurrency: asyncio.run(_main(host, ports, concurrency)))


if __name__ == "__main__":
    main()
