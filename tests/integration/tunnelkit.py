#!/usr/bin/python3
"""Servers and clients for the remote-support tunnel tests (loopback only).

Servers (each started in the test process, stopped at teardown):
  SSHD(dir, addrs)            /usr/sbin/sshd -D with throwaway host and user
                               keys; .ssh_argv()/.scp_argv()/.sftp_argv()
                               build client commands (direct, or through a
                               TLS CONNECT proxy with proxytunnel)
  HTTPSServer(dir, names)     HTTPS with a certificate from its own test CA:
                               GET /page (PAGE), GET /big (BIG_SIZE bytes,
                               sha256 in .big_sha256)
  TCPServer(addrs, mode)      "echo": greets with "ECHO <addr>:<port>\\n", then
                               echoes; "sink": reads, counts and hashes.
                               Every connection is recorded (Conn).
  TLSConnectProxy(...)        a minimal TLS CONNECT proxy to loopback, only to
                               check the client side (proxytunnel flags, the
                               ssh command) without comsim

Clients:
  proxy_connect(port, dest, ...)  -> Reply(status, reason, headers, body,
                               tunnel): CONNECT over TLS to COM's proxy
  Tunnel                      the engineer's end of an open tunnel

As a script (a separate process, so bulk traffic does not share the GIL
with the test):
  tunnelkit.py send --port P --ca CA --dest HOST:PORT --bytes N
      [--user U --password PW]   sends N pseudo-random bytes through a
      tunnel, then closes; prints {"sent", "sha256", "seconds", "status"}.
  tunnelkit.py recv --port P --ca CA --dest HOST:PORT
      reads a tunnel until EOF; prints {"received", "sha256", "seconds"}.
"""

import argparse
import base64
import getpass
import hashlib
import json
import os
import random
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

SSHD_BIN = "/usr/sbin/sshd"
PROXY_USER = "reseller1"
PROXY_PASSWORD = "proxypw"
COM_DOMAIN = "com.example.test"

PAGE = b"<html><body>hello from the pbx web server: 4711</body></html>\n"
BIG_SIZE = 8 * 1024 * 1024


def maint(customer="C1001", system=None, host=None, domain=COM_DOMAIN):
    """The support engineer's CONNECT name for a target."""
    parts = [customer] + [p for p in (system, host) if p]
    return "%s.maint.%s" % ("-".join(parts), domain)


def wait_port(host, port, timeout=10, proc=None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %s before listening on %s:%d"
                               % (proc.returncode, host, port))
        if time.monotonic() > deadline:
            raise RuntimeError("nothing listening on %s:%d after %ss" % (host, port, timeout))
        time.sleep(0.05)


def free_port(host="127.0.0.1"):
    s = socket.socket()
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_tcp_udp_port(host="127.0.0.1"):
    """A port free for both TCP and UDP on host right now (a syslog
    receiver takes both)."""
    for _ in range(50):
        t = socket.socket()
        t.bind((host, 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((host, port))
        except OSError:
            t.close()
            continue
        t.close()
        u.close()
        return port
    raise RuntimeError("no port free for both TCP and UDP")


def pattern(size, seed=1):
    """A deterministic pseudo-random block (cheap to repeat)."""
    return random.Random(seed).randbytes(size)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def write_random_file(path, size):
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        i = 0
        while left > 0:
            # vary the block so that no 1 MiB repeats (catches reordering)
            b = i.to_bytes(8, "big") + block[8:]
            b = b[:left]
            f.write(b)
            h.update(b)
            left -= len(b)
            i += 1
    return h.hexdigest()


def rss_kb(pid):
    """VmRSS of a process in KiB (None when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# ------------------------------------------------------------------ PKI

def _openssl(*args, cwd=None):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (args[0], r.stderr.strip()))


def make_ca(directory, stem="srvca", cn="tunnel test server CA"):
    os.makedirs(directory, exist_ok=True)
    pem = os.path.join(directory, stem + ".pem")
    key = os.path.join(directory, stem + ".key")
    cnf = os.path.join(directory, stem + ".cnf")
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n"
                "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
                "keyUsage = critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier = hash\n" % cn)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", key)
    _openssl("req", "-x509", "-new", "-config", cnf, "-extensions", "v3_ca",
             "-key", key, "-sha256", "-days", "30", "-out", pem)
    return pem, key


def make_cert(directory, ca_pem, ca_key, names, ips=(), stem="server"):
    """A server certificate with DNS SANs `names` (and IP SANs `ips`)."""
    pem = os.path.join(directory, stem + ".pem")
    key = os.path.join(directory, stem + ".key")
    cnf = os.path.join(directory, stem + ".cnf")
    csr = os.path.join(directory, stem + ".csr")
    san = ",".join(["DNS:%s" % n for n in names] + ["IP:%s" % i for i in ips])
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n"
                "[v3_srv]\nbasicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature\n"
                "extendedKeyUsage = serverAuth\nsubjectAltName = %s\n" % (names[0], san))
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", key)
    _openssl("req", "-new", "-config", cnf, "-key", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
             "-set_serial", "0x%x" % random.getrandbits(64), "-days", "30", "-sha256",
             "-extfile", cnf, "-extensions", "v3_srv", "-out", pem)
    return pem, key


# ------------------------------------------------------------------ sshd

class SSHD:
    """A throwaway sshd: own host key, own user key, own config, no PAM.

    Logs in as the user running the tests (root in CI: PermitRootLogin
    prohibit-password, key only)."""

    def __init__(self, directory, addrs=("127.0.0.1",), port=0):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.addrs = list(addrs)
        self.port = port or free_port(self.addrs[0])
        self.user = getpass.getuser()
        self.hostkey = os.path.join(self.dir, "ssh_host_ed25519_key")
        self.userkey = os.path.join(self.dir, "id_ed25519")
        self.authorized = os.path.join(self.dir, "authorized_keys")
        self.config = os.path.join(self.dir, "sshd_config")
        self.pidfile = os.path.join(self.dir, "sshd.pid")
        self.log_path = os.path.join(self.dir, "sshd.log")
        self.proc = None

    def _keygen(self, path, comment):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", path], check=True, capture_output=True)

    def start(self, timeout=10):
        if not os.path.exists(SSHD_BIN):
            raise RuntimeError("%s not installed (scripts/deps.sh installs "
                               "openssh-server)" % SSHD_BIN)
        self._keygen(self.hostkey, "tunnel-test-host")
        self._keygen(self.userkey, "tunnel-test-user")
        shutil.copy(self.userkey + ".pub", self.authorized)
        os.chmod(self.authorized, 0o600)
        lines = ["ListenAddress %s" % a for a in self.addrs] + [
            "Port %d" % self.port,
            "HostKey %s" % self.hostkey,
            "AuthorizedKeysFile %s" % self.authorized,
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "StrictModes no",
            "UsePAM no",
            "PidFile %s" % self.pidfile,
            "Subsystem sftp internal-sftp",
            "PrintMotd no",
            "UseDNS no",
            "LogLevel VERBOSE",
            "MaxStartups 100:30:200",
        ]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        # privilege separation directory (root only; harmless otherwise)
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError:
            pass
        t = subprocess.run([SSHD_BIN, "-t", "-f", self.config], capture_output=True,
                           text=True)
        if t.returncode != 0:
            raise RuntimeError("sshd -t: %s" % t.stderr.strip())
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SSHD_BIN, "-D", "-e", "-f", self.config],
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=self._logf)
        for a in self.addrs:
            wait_port(a, self.port, timeout, self.proc)
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._logf.close()
            self.proc = None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- clients
    def client_opts(self, proxy=None, port=None):
        """Common ssh/scp/sftp -o options. proxy: dict(port, ca, dest,
        user, password) for a proxytunnel ProxyCommand; None: direct."""
        opts = ["-F", "/dev/null", "-i", self.userkey,
                "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes",
                "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=20"]
        if proxy is not None:
            opts += ["-o", "ProxyCommand=%s" % proxytunnel_cmd(**proxy)]
        elif port is not None:
            opts += ["-o", "Port=%d" % port]
        return opts

    def ssh_argv(self, command, host="127.0.0.1", proxy=None, port=None):
        if proxy is None and port is None:
            port = self.port
        return (["ssh"] + self.client_opts(proxy, port)
                + ["-l", self.user, host, command])

    def scp_argv(self, src, dst, proxy=None, port=None, legacy=False):
        """src/dst: local paths or 'HOST:path' (the user is added)."""
        if proxy is None and port is None:
            port = self.port

        def fix(p):
            return "%s@%s" % (self.user, p) if ":" in p and not p.startswith("/") else p
        return (["scp", "-q"] + (["-O"] if legacy else [])
                + self.client_opts(proxy, port) + [fix(src), fix(dst)])

    def sftp_argv(self, batchfile, host="127.0.0.1", proxy=None, port=None):
        if proxy is None and port is None:
            port = self.port
        return (["sftp", "-q", "-b", batchfile] + self.client_opts(proxy, port)
                + ["%s@%s" % (self.user, host)])


def proxytunnel_cmd(port, ca, dest, user=PROXY_USER, password=PROXY_PASSWORD,
                    proxy_host="localhost"):
    """proxytunnel as an ssh ProxyCommand: -E TLS to the proxy, verified
    against -C ca (it checks the host name, `localhost`, against the
    certificate's SANs), -P Basic credentials, -d the CONNECT destination;
    stdin/stdout carry the tunnel. Not -q: on a refusal it prints
    "HTTP return code: 403 Forbidden" to stderr (not the body)."""
    return " ".join(shlex.quote(x) for x in [
        "proxytunnel", "-E", "-C", ca, "-p", "%s:%d" % (proxy_host, port),
        "-P", "%s:%s" % (user, password), "-d", dest])


# ------------------------------------------------------------------ TCP servers

class Conn:
    def __init__(self, sock, local, peer):
        self.sock = sock
        self.local = local
        self.peer = peer
        self.t_open = time.time()
        self.t_eof = None           # when the peer's EOF (or reset) was seen
        self.error = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.sha = hashlib.sha256()

    @property
    def closed(self):
        return self.t_eof is not None

    def __repr__(self):
        return "<Conn %s<-%s in=%d out=%d eof=%s err=%s>" % (
            self.local, self.peer, self.bytes_in, self.bytes_out, self.t_eof, self.error)


class TCPServer:
    """Threaded TCP server on one or more loopback addresses, same port.

    mode "echo": sends "ECHO <local-ip>:<port>\\n" on connect, then echoes
    every byte; "sink": reads until EOF, counting and hashing; "source":
    sends `nbytes` pseudo-random bytes (hashed), then closes."""

    def __init__(self, addrs=("127.0.0.1",), mode="echo", port=0, nbytes=0):
        self.addrs = list(addrs)
        self.mode = mode
        self.nbytes = nbytes            # "source": bytes sent per connection
        self.port = port
        self.conns = []
        self._lock = threading.Lock()
        self._socks = []
        self._stop = False

    def start(self):
        for i, a in enumerate(self.addrs):
            s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((a, self.port))
            if i == 0 and not self.port:
                self.port = s.getsockname()[1]
            s.listen(64)
            self._socks.append(s)
            threading.Thread(target=self._accept, args=(s,), daemon=True,
                             name="tcpserver-accept").start()
        return self

    def stop(self):
        self._stop = True
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        with self._lock:
            for c in self.conns:
                try:
                    c.sock.close()
                except OSError:
                    pass

    def _accept(self, ls):
        while not self._stop:
            try:
                s, peer = ls.accept()
            except OSError:
                return
            c = Conn(s, s.getsockname()[:2], peer[:2])
            with self._lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True,
                             name="tcpserver-conn").start()

    def _serve(self, c):
        s = c.sock
        try:
            if self.mode == "source":
                self._source(c)
                return
            if self.mode == "echo":
                banner = ("ECHO %s:%d\n" % (c.local[0], c.local[1])).encode()
                s.sendall(banner)
                c.bytes_out += len(banner)
            while True:
                b = s.recv(262144)
                if not b:
                    break
                c.bytes_in += len(b)
                if self.mode == "echo":
                    s.sendall(b)
                    c.bytes_out += len(b)
                else:
                    c.sha.update(b)
        except OSError as e:
            c.error = repr(e)
        finally:
            c.t_eof = time.time()
            try:
                s.close()
            except OSError:
                pass

    def _source(self, c):
        block = pattern(256 * 1024 + 4096, seed=5)
        i = 0
        while c.bytes_out < self.nbytes:
            off = (i * 991) % 4096
            b = block[off:off + min(256 * 1024, self.nbytes - c.bytes_out)]
            c.sock.sendall(b)
            c.sha.update(b)
            c.bytes_out += len(b)
            i += 1
        c.sock.shutdown(socket.SHUT_WR)
        # wait for the other side to close (or the test to stop us)
        c.sock.settimeout(300)
        while c.sock.recv(65536):
            pass

    def connections(self, local=None):
        with self._lock:
            cs = list(self.conns)
        return [c for c in cs if local is None or c.local[0] == local]


# ------------------------------------------------------------------ HTTPS server

class HTTPSServer:
    """HTTPS on loopback with a certificate from its own CA (`ca`), DNS
    SANs `names` (plus localhost / 127.0.0.1). GET /page -> PAGE,
    GET /big -> BIG_SIZE deterministic bytes (sha256 .big_sha256)."""

    def __init__(self, directory, names, addr="127.0.0.1"):
        import http.server
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.ca, ca_key = make_ca(self.dir)
        self.cert, self.key = make_cert(self.dir, self.ca, ca_key,
                                        list(names) + ["localhost"], ips=["127.0.0.1"])
        self.big = pattern(BIG_SIZE, seed=7)
        self.big_sha256 = hashlib.sha256(self.big).hexdigest()
        self.requests = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        kit = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                # TLS handshake in the connection's own thread
                self.request.settimeout(30)
                self.request = ctx.wrap_socket(self.request, server_side=True)
                super().setup()

            def do_GET(self):
                kit.requests.append((self.path, self.headers.get("Host")))
                if self.path == "/page":
                    body = PAGE
                elif self.path == "/big":
                    body = kit.big
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.httpd = Server((addr, 0), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="https-server")
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------ engineer's client

class Reply:
    def __init__(self, status, reason, headers, body, tunnel, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers          # lower-case names
        self.body = body
        self.tunnel = tunnel
        self.raw_head = raw_head

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "<Reply %s %r headers=%r body=%r>" % (self.status, self.reason,
                                                     self.headers, self.body[:300])


class ProxyClosed(Exception):
    pass


def tls_to_proxy(port, ca, host="127.0.0.1", server_name="localhost", timeout=15):
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_name)
    except Exception:
        raw.close()
        raise


def proxy_connect(port, ca, dest, user=PROXY_USER, password=PROXY_PASSWORD,
                  request=None, timeout=20, headers=None):
    """CONNECT `dest` through COM's TLS proxy on 127.0.0.1:port.

    `request` (bytes) replaces the whole request (garbage tests). Returns
    a Reply; on 200, .tunnel is the open Tunnel, otherwise the connection
    has been closed after reading the body."""
    s = tls_to_proxy(port, ca, timeout=timeout)
    try:
        if request is None:
            lines = ["CONNECT %s HTTP/1.1" % dest, "Host: %s" % dest]
            if user is not None:
                cred = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
                lines.append("Proxy-Authorization: Basic %s" % cred)
            lines += list(headers or [])
            request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        s.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                b = s.recv(65536)
            except (ConnectionError, ssl.SSLError) as e:
                raise ProxyClosed("proxy closed before answering (%r); got %r" % (e, buf))
            if not b:
                raise ProxyClosed("proxy closed before answering; got %r" % buf)
            buf += b
            if len(buf) > 65536:
                raise ProxyClosed("no end of header in %d bytes" % len(buf))
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProxyClosed("not an HTTP status line: %r" % lines[0])
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        hdrs = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if status == 200:
            return Reply(status, reason, hdrs, b"", Tunnel(s, rest), head)
        body = rest
        n = hdrs.get("content-length")
        deadline = time.monotonic() + timeout
        while (n is None or len(body) < int(n)) and time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except (OSError, ssl.SSLError):
                break
            if not b:
                break
            body += b
        if n is not None:
            body = body[:int(n)]
        s.close()
        return Reply(status, reason, hdrs, body, None, head)
    except BaseException:
        s.close()
        raise


class Tunnel:
    """The engineer's end of an established tunnel (TLS to the proxy)."""

    def __init__(self, sock, pending=b""):
        self.sock = sock
        self.buf = pending
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            b = self.sock.recv(262144)
        except socket.timeout:
            return None
        except (ConnectionError, ssl.SSLError, OSError):
            b = b""
        if not b:
            self.eof = True
            return False
        self.buf += b
        return True

    def recv_exact(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out after %gs: %d of %d bytes arrived "
                                     "through the tunnel" % (timeout, len(self.buf), n))
            r = self._fill(left)
            if r is False:
                raise AssertionError("tunnel closed after %d of %d bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def readline(self, timeout=10, limit=4096):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or len(self.buf) > limit:
                raise AssertionError("no line through the tunnel within %gs (got %r)"
                                     % (timeout, self.buf[:200]))
            r = self._fill(left)
            if r is False:
                raise AssertionError("tunnel closed before a line arrived (got %r)"
                                     % self.buf[:200])
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def wait_closed(self, timeout=10):
        """True once the proxy closed the connection (data before EOF is
        kept in .buf), False if still open after `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._fill(min(left, 0.5))
        return True

    def roundtrip(self, data, timeout=10):
        self.send(data)
        got = self.recv_exact(len(data), timeout)
        if got != data:
            raise AssertionError("echo mismatch: sent %r got %r" % (data[:60], got[:60]))
        return got

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def open_echo(port, ca, dest, timeout=20, **kw):
    """CONNECT to an echo server; returns (tunnel, banner) or raises with the
    proxy's answer."""
    r = proxy_connect(port, ca, dest, timeout=timeout, **kw)
    if r.status != 200:
        raise AssertionError("CONNECT %s answered %s %s: %r (X-COM-Reason %r)" % (
            dest, r.status, r.reason, r.body, r.headers.get("x-com-reason")))
    banner = r.tunnel.readline(timeout).decode().strip()
    return r.tunnel, banner


# ------------------------------------------------------------------ a TLS CONNECT proxy (kit self-test)

class TLSConnectProxy:
    """Minimal TLS CONNECT proxy with Basic auth, tunnelling to a fixed
    loopback `target` (host, port) whatever the CONNECT names. Only to check
    the client tools without comsim."""

    def __init__(self, cert, key, target, user=PROXY_USER, password=PROXY_PASSWORD):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target = target
        self.auth = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.requests = []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.ls.close()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True)
            buf = b""
            while b"\r\n\r\n" not in buf:
                b = s.recv(4096)
                if not b:
                    return
                buf += b
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("iso-8859-1").split("\r\n")
            hdrs = {k.strip().lower(): v.strip() for k, v in
                    (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            self.requests.append((lines[0], hdrs))
            if hdrs.get("proxy-authorization") != self.auth:
                s.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                          b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                          b"Content-Length: 0\r\n\r\n")
                s.close()
                return
            t = socket.create_connection(self.target)
            s.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                t.sendall(rest)

            def pump(a, b):
                try:
                    while True:
                        d = a.recv(65536)
                        if not d:
                            break
                        b.sendall(d)
                except OSError:
                    pass
                finally:
                    for x in (a, b):
                        try:
                            x.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
            th = threading.Thread(target=pump, args=(t, s), daemon=True)
            th.start()
            pump(s, t)
            th.join(30)
            s.close()
            t.close()
        except (OSError, ssl.SSLError):
            try:
                raw.close()
            except OSError:
                pass


# ------------------------------------------------------------------ bulk sender (script)

def bulk_send(port, ca, dest, nbytes, user=PROXY_USER, password=PROXY_PASSWORD,
              chunk=256 * 1024):
    r = proxy_connect(port, ca, dest, user=user, password=password)
    if r.status != 200:
        return {"status": r.status, "body": r.text, "sent": 0}
    t = r.tunnel
    block = pattern(chunk + 4096, seed=3)
    h = hashlib.sha256()
    sent = 0
    t0 = time.monotonic()
    t.sock.settimeout(120)
    i = 0
    try:
        while sent < nbytes:
            off = (i * 997) % 4096          # shift so that chunks differ
            b = block[off:off + min(chunk, nbytes - sent)]
            t.sock.sendall(b)
            h.update(b)
            sent += len(b)
            i += 1
        err = None
    except (OSError, ssl.SSLError) as e:
        err = repr(e)
    secs = time.monotonic() - t0
    # close_notify + FIN: comsim sees the end, sends stream.close done; the
    # wait for its close_notify is bounded
    try:
        t.sock.settimeout(10)
        t.sock.unwrap().close()
    except (OSError, ssl.SSLError, ValueError):
        t.close()
    return {"status": 200, "sent": sent, "sha256": h.hexdigest(),
            "seconds": secs, "error": err}


def bulk_recv(port, ca, dest, user=PROXY_USER, password=PROXY_PASSWORD,
              timeout=120):
    """Read a tunnel until EOF; hash what arrived."""
    r = proxy_connect(port, ca, dest, user=user, password=password)
    if r.status != 200:
        return {"status": r.status, "body": r.text, "received": 0}
    t = r.tunnel
    h = hashlib.sha256(t.buf)
    n = len(t.buf)
    t0 = time.monotonic()
    t.sock.settimeout(timeout)
    err = None
    try:
        while True:
            b = t.sock.recv(262144)
            if not b:
                break
            h.update(b)
            n += len(b)
    except (OSError, ssl.SSLError) as e:
        err = repr(e)
    secs = time.monotonic() - t0
    t.close()
    return {"status": 200, "received": n, "sha256": h.hexdigest(),
            "seconds": secs, "error": err}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tunnelkit.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send", help="send N bytes through a tunnel")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--ca", required=True)
    s.add_argument("--dest", required=True)
    s.add_argument("--bytes", type=int, required=True)
    s.add_argument("--user", default=PROXY_USER)
    s.add_argument("--password", default=PROXY_PASSWORD)
    r = sub.add_parser("recv", help="read a tunnel until EOF")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--ca", required=True)
    r.add_argument("--dest", required=True)
    r.add_argument("--user", default=PROXY_USER)
    r.add_argument("--password", default=PROXY_PASSWORD)
    h = sub.add_parser("https", help="serve HTTPS (/page, /big) until killed")
    h.add_argument("--dir", required=True)
    h.add_argument("--name", action="append", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "https":
        srv = HTTPSServer(a.dir, a.name)
        print(json.dumps({"port": srv.port, "ca": srv.ca}), flush=True)
        srv.httpd.serve_forever()
        return 0
    if a.cmd == "recv":
        out = bulk_recv(a.port, a.ca, a.dest, a.user, a.password)
        print(json.dumps(out), flush=True)
        return 0 if out.get("status") == 200 and not out.get("error") else 1
    if a.cmd == "send":
        out = bulk_send(a.port, a.ca, a.dest, a.bytes, a.user, a.password)
        print(json.dumps(out), flush=True)
        return 0 if out.get("status") == 200 and out.get("sent") == a.bytes else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
