#!/usr/bin/python3
"""A tiny HTTP CONNECT proxy for the integration tests (asyncio, stdlib).

It runs its own event loop in a background thread, optionally demands
`Proxy-Authorization: Basic`, records every CONNECT it sees, and tunnels
only to loopback (localhost, 127.0.0.1, ::1): it never dials anywhere else.

    p = ConnectProxy(user="agent", password="secret").start()
    ... p.port ... p.connects() ... p.stop()

Standalone: connectproxy.py [--port N] [--user U --password P]
"""

import argparse
import asyncio
import base64
import binascii
import threading
import time

LOOPBACK = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1",
            "::1": "::1", "[::1]": "::1"}


class ConnectProxy:
    def __init__(self, user=None, password=None, host="127.0.0.1", port=0):
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.records = []
        self._lock = threading.Lock()
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None
        self._tasks = set()

    # -- public
    def start(self, timeout=10):
        self._thread = threading.Thread(target=self._run, name="connectproxy",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("connect proxy did not start")
        if self._error:
            raise self._error
        return self

    def stop(self, timeout=10):
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            fut.result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop = None

    def connects(self):
        """A copy of the records: one dict per request received."""
        with self._lock:
            return [dict(r) for r in self.records]

    # -- internals
    def _run(self):
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._client, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
        except Exception as e:  # reported by start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self):
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0)

    def _record(self, **kw):
        kw["t"] = time.time()
        with self._lock:
            self.records.append(kw)
        return kw

    async def _client(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception as e:
            self._record(error=repr(e))
        finally:
            self._tasks.discard(task)
            writer.close()

    @staticmethod
    async def _reply(writer, status, extra=""):
        writer.write(("HTTP/1.1 %s\r\n%sContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n" % (status, extra)).encode())
        await writer.drain()

    async def _serve(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError):
            self._record(error="incomplete request head")
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        headers = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        rec = self._record(request=lines[0], method=parts[0] if parts else "",
                           target=parts[1] if len(parts) > 1 else "",
                           headers=headers, auth_user=None, auth_password=None,
                           authorized=False, status=None)
        if len(parts) != 3 or parts[0] != "CONNECT":
            rec["status"] = 405
            await self._reply(writer, "405 Method Not Allowed")
            return
        auth = headers.get("proxy-authorization")
        if auth:
            scheme, _, cred = auth.partition(" ")
            if scheme.lower() == "basic":
                try:
                    u, _, p = base64.b64decode(cred.strip(), validate=True
                                               ).decode("utf-8").partition(":")
                    rec["auth_user"], rec["auth_password"] = u, p
                except (binascii.Error, UnicodeDecodeError):
                    pass
        if self.user is not None and (rec["auth_user"], rec["auth_password"]) != (
                self.user, self.password):
            rec["status"] = 407
            await self._reply(writer, "407 Proxy Authentication Required",
                              'Proxy-Authenticate: Basic realm="comsim-test"\r\n')
            return
        rec["authorized"] = True
        host, _, port = parts[1].rpartition(":")
        if host not in LOOPBACK or not port.isdigit():
            rec["status"] = 403
            await self._reply(writer, "403 Forbidden")
            return
        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection(LOOPBACK[host], int(port)), 5)
        except (OSError, asyncio.TimeoutError) as e:
            rec["status"] = 502
            rec["error"] = repr(e)
            await self._reply(writer, "502 Bad Gateway")
            return
        rec["status"] = 200
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(r, w):
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                try:
                    if w.can_write_eof():
                        w.write_eof()
                except (OSError, RuntimeError):
                    pass

        try:
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        finally:
            up_w.close()
            rec["closed"] = time.time()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user")
    ap.add_argument("--password")
    a = ap.parse_args()
    p = ConnectProxy(a.user, a.password, port=a.port).start()
    print("listening on 127.0.0.1:%d" % p.port, flush=True)
    try:
        p._thread.join()
    except KeyboardInterrupt:
        p.stop()


if __name__ == "__main__":
    main()
