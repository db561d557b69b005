#!/usr/bin/env python3
"""Forwards TCP from LISTEN_HOST:PORT to TARGET_HOST:PORT (the test node's pods reach the API
server, which listens on loopback only, at the bridge address): `forward.py 10.244.0.1:6443 127.0.0.1:6443`."""
import asyncio, sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen, target):
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)

    async def handle(reader, writer):
        try:
            treader, twriter = await asyncio.open_connection(thost, int(tport))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, twriter), pipe(treader, writer))

    server = await asyncio.start_server(handle, lhost, int(lport))
    async with server:
        await server.serve_forever()


asyncio.run(main(sys.argv[1], sys.argv[2]))
