"""A TCP relay that breaks the link on purpose, for the fault tests
(asyncio, stdlib only).

It sits between the agent and comsim's WSS port: the agent dials
wss://localhost:<relay port>/agent/v1 and the relay copies bytes to and
from 127.0.0.1:<target port>. TLS stays end to end (the relay never sees
the plaintext), so every fault it makes lands at a byte position of the TLS
stream: in the middle of a TLS record, of a WebSocket frame, of a
handshake. It runs its own event loop in a background thread, listens on
127.0.0.1 only and dials only the loopback target.

    r = FaultRelay(sim.port).start()
    r.throttle(1)                  # every connection: 1 byte/s COM -> agent
    r.throttle(1 << 20, "both")    # 1 MiB/s each way
    r.throttle(None, "both")       # full speed again
    r.cut("down", 1000)            # the current connection: 1000 more bytes, then cut
    r.blackhole()                  # the current connection: swallow everything, never close
    r.inject("down", b"garbage")   # the current connection: raw bytes into the stream
    r.on_accept = "garbage"        # new connections get random bytes first
    r.conns()                      # [{"n", "up", "down", "closed", ...}]
    r.stop()

"down" is COM -> agent, "up" is agent -> COM.
"""

import asyncio
import os
import socket
import struct
import threading
import time

DIRS = ("up", "down")


class _Conn:
    def __init__(self, n):
        self.n = n
        self.t_open = time.time()
        self.bytes = {"up": 0, "down": 0}
        self.cut_left = {"up": None, "down": None}
        self.cut_how = "rst"
        self.blackholed = False
        self.closed = False
        self.closed_why = None
        self.t_closed = None
        self.writers = {}          # direction -> StreamWriter it writes to

    def json(self):
        return {"n": self.n, "t_open": self.t_open, "up": self.bytes["up"],
                "down": self.bytes["down"], "closed": self.closed,
                "closed_why": self.closed_why, "t_closed": self.t_closed,
                "blackholed": self.blackholed}


class FaultRelay:
    def __init__(self, target_port, target_host="127.0.0.1", host="127.0.0.1"):
        assert target_host in ("127.0.0.1", "::1", "localhost"), target_host
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        # Settings for every connection (read live by the pumps).
        self.rate = {"up": None, "down": None}      # bytes per second; None: full speed
        # What a new connection gets first: None (nothing), "garbage"
        # (random bytes, then the real stream), "http" (a plaintext HTTP
        # answer, then close), "close" (accept and close at once).
        self.on_accept = None
        self._conns = []
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self._server = None
        self._ready = threading.Event()
        self._error = None
        self._tasks = set()

    # -- public ------------------------------------------------------------
    def start(self, timeout=10):
        self._thread = threading.Thread(target=self._run, name="faultrelay",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("fault relay did not start")
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

    def conns(self):
        with self._lock:
            return [c.json() for c in self._conns]

    def current(self):
        """The newest connection that is still open (a _Conn), or None."""
        with self._lock:
            for c in reversed(self._conns):
                if not c.closed:
                    return c
        return None

    def throttle(self, rate, direction="down"):
        """Bytes per second in that direction ("both" for both), for every
        connection (the open ones from their next step); None: full
        speed."""
        for d in (DIRS if direction == "both" else (direction,)):
            self.rate[d] = rate

    def cut(self, direction, after, how="rst"):
        """The current connection: pass `after` more bytes in `direction`,
        then cut both sides (how: "rst" — an abortive close — or "fin")."""
        c = self._need_current()
        self._call(lambda: self._set_cut(c, direction, after, how))
        return c.n

    def blackhole(self):
        """The current connection: from now on every byte either way is
        read and dropped, and nothing is closed (a half-open link: packets
        vanish, no FIN). Closed only when the relay stops."""
        c = self._need_current()
        c.blackholed = True
        return c.n

    def inject(self, direction, data):
        """The current connection: write raw bytes into the stream now,
        between whatever the relay forwards."""
        c = self._need_current()
        self._call(lambda: self._inject(c, direction, data))
        return c.n

    # -- internals ----------------------------------------------------------
    def _need_current(self):
        c = self.current()
        if c is None:
            raise AssertionError("the fault relay has no open connection")
        return c

    def _call(self, fn):
        done = threading.Event()
        box = []

        def run():
            try:
                box.append(fn())
            finally:
                done.set()
        self._loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise RuntimeError("fault relay loop did not answer")
        return box[0] if box else None

    def _set_cut(self, c, direction, after, how):
        c.cut_how = how
        c.cut_left[direction] = after
        if after == 0:
            self._close(c, "cut", abortive=how == "rst")

    def _inject(self, c, direction, data):
        w = c.writers.get(direction)
        if w is not None and not c.closed:
            w.write(data)
            c.bytes[direction] += len(data)

    def _run(self):
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._client, self.host, 0))
            self.port = self._server.sockets[0].getsockname()[1]
        except Exception as e:     # reported by start()
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
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            self._close(c, "relay stopped", abortive=False)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0)

    def _close(self, c, why, abortive=False):
        if c.closed:
            return
        c.closed, c.closed_why, c.t_closed = True, why, time.time()
        for w in c.writers.values():
            try:
                if abortive:
                    sock = w.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    w.transport.abort()
                else:
                    w.close()
            except Exception:
                pass

    async def _client(self, a_reader, a_writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        with self._lock:
            c = _Conn(len(self._conns) + 1)
            self._conns.append(c)
        try:
            await self._serve(c, a_reader, a_writer)
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            if not c.blackholed:
                self._close(c, c.closed_why or "ended")
            else:
                # A blackholed connection is never closed from here: the
                # peers must find out by themselves (keepalive). Its
                # sockets go when the relay stops.
                pass

    async def _serve(self, c, a_reader, a_writer):
        first = self.on_accept
        c.writers["down"] = a_writer
        if first == "close":
            self._close(c, "on_accept close")
            return
        if first == "http":
            a_writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                           b"Connection: close\r\n\r\nhello")
            await a_writer.drain()
            self._close(c, "on_accept http")
            return
        try:
            u_reader, u_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), 5)
        except (OSError, asyncio.TimeoutError):
            self._close(c, "target unreachable")
            return
        c.writers["up"] = u_writer
        if first == "garbage":
            junk = os.urandom(512)
            a_writer.write(junk)
            c.bytes["down"] += len(junk)
        await asyncio.gather(self._pump(c, "up", a_reader, u_writer),
                             self._pump(c, "down", u_reader, a_writer))

    async def _pump(self, c, d, r, w):
        try:
            while not c.closed:
                data = await r.read(65536)
                if not data:
                    break
                if c.blackholed:
                    continue
                left = c.cut_left[d]
                cut = left is not None and len(data) >= left
                if cut:
                    data = data[:left]
                elif left is not None:
                    c.cut_left[d] = left - len(data)
                await self._write(c, d, w, data)
                if cut:
                    await asyncio.sleep(0.05)   # let the kernel pass it on
                    self._close(c, "cut", abortive=c.cut_how == "rst")
                    return
        except (ConnectionError, OSError):
            pass
        if c.blackholed:
            # Packets vanish: neither side hears of the other's end.
            while not c.closed:
                try:
                    if not await r.read(65536):
                        return
                except (ConnectionError, OSError):
                    return
            return
        self._close(c, "%s side closed" % ("agent" if d == "up" else "COM"))

    async def _write(self, c, d, w, data):
        """data to w at the direction's rate: in steps of a twentieth of a
        second's worth (one byte at 1 byte/s), each followed by its time."""
        i = 0
        while i < len(data) and not c.closed:
            if c.blackholed:
                return
            rate = self.rate[d]
            if not rate:
                w.write(data[i:])
                c.bytes[d] += len(data) - i
                await w.drain()
                return
            step = max(1, int(rate) // 20)
            chunk = data[i:i + step]
            w.write(chunk)
            c.bytes[d] += len(chunk)
            i += len(chunk)
            await w.drain()
            await asyncio.sleep(len(chunk) / rate)
