"""A parallel HTTP driver for the Prometheus blackbox exporter's /probe endpoint.

Keeps ``--connections`` HTTP/1.1 keep-alive connections to the exporter and sends one
``GET /probe?module=...&target=127.0.0.1:PORT`` per port, reading each response by its
Content-Length (RFC 9112 §6.3). Counts ``probe_success 1``. Prints ``{"ok": N, "failed": M}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


async def _worker(
    exporter: tuple[str, int], module: str, host: str, queue: list[int], counts: dict[str, int]
) -> None:
    reader, writer = await asyncio.open_connection(*exporter)
    try:
        while queue:
            port = queue.pop()
            writer.write(
                f"GET /probe?module={module}&target={host}:{port} HTTP/1.1\r\n"
                f"Host: {exporter[0]}:{exporter[1]}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            key = "ok" if b"\nprobe_success 1" in b"\n" + body else "failed"
            counts[key] += 1
    finally:
        writer.close()


async def _main(args: argparse.Namespace) -> dict[str, int]:
    with open(args.ports_file, encoding="ascii") as fh:
        queue = [int(line) for line in fh if line.strip()][::-1]
    counts = {"ok": 0, "failed": 0}
    host, _, port = args.exporter.rpartition(":")
    await asyncio.gather(
        *(
            _worker((host, int(port)), args.module, args.host, queue, counts)
            for _ in range(args.connections)
        )
    )
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exporter", required=True, help="host:port of the exporter")
    ap.add_argument("--module", default="tls_connect")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ports-file", required=True)
    ap.add_argument("--connections", type=int, default=100)
    args = ap.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(_main(args))) + "\n")


if __name__ == "__main__":
    main()
