"""The imperative edge: name resolution and the one asyncio driver that touches sockets."""
