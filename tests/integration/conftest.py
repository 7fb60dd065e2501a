"""Integration-test harness: the real comagent binary against comsim.

    /usr/bin/python3 -m pytest tests/integration
    COMAGENT_BIN=/path/to/comagent /usr/bin/python3 -m pytest tests/integration

Fixtures
  comsim(customers=None, cert_name="localhost") -> Sim   (started; factory)
  agent(sim, overrides=None, **identity)        -> Agent (started; factory)
  proxy(user=None, password=None)               -> ConnectProxy (factory)
  wait_until(pred, timeout, what)                polls pred until truthy

Everything a test starts is stopped at teardown; agents are stopped with
SIGTERM and must exit 0 without a sanitizer report.
"""

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "comsim"))
sys.path.insert(0, HERE)

import comsim as comsim_mod  # noqa: E402
from connectproxy import ConnectProxy  # noqa: E402

COMAGENT_BIN = os.environ.get("COMAGENT_BIN",
                              os.path.join(REPO, "build", "asan", "comagent"))
HOOKS_DIR = os.path.join(REPO, "scripts")
TEST_TIMEOUT = float(os.environ.get("COMAGENT_TEST_TIMEOUT", "90"))
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer")

DEFAULT_CUSTOMER = {"customer": "C1001", "system": "pbx-hq",
                    "user": "COMAdmin", "password": "pw", "state": "ok"}


# ------------------------------------------------------------------ helpers

def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns something truthy; return that value.
    Fails the test after `timeout` seconds, naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


def observe(seconds):
    """An observation window (counting what happens in it), not a wait for
    something: tests use this only to measure that something does NOT happen."""
    time.sleep(seconds)


def tail(text, n=80):
    lines = text.splitlines()
    return "\n".join(lines[-n:])


def need_binary():
    if not (os.path.isfile(COMAGENT_BIN) and os.access(COMAGENT_BIN, os.X_OK)):
        pytest.fail("agent binary %s not found or not executable (build it with "
                    "`make build/asan/comagent`, or set COMAGENT_BIN)" % COMAGENT_BIN,
                    pytrace=False)


def agent_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    env.setdefault("LSAN_OPTIONS", "")
    return env


def run_cli(*args, timeout=20, env=None):
    """Run `comagent ARGS...` to completion; CompletedProcess (text)."""
    need_binary()
    return subprocess.run([COMAGENT_BIN, *args], capture_output=True, text=True,
                          timeout=timeout, env=env or agent_env(),
                          stdin=subprocess.DEVNULL)


def sanitizer_report(text):
    return [m for m in SANITIZER_MARKS if m in text]


def write_ini(path, sections, mode=0o600):
    """Write an INI from {section: {key: value}}; create it with `mode`."""
    out = []
    for sec, kv in sections.items():
        out.append("[%s]" % sec)
        for k, v in kv.items():
            if v is not None:
                out.append("%s = %s" % (k, v))
        out.append("")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(out))
    os.chmod(path, mode)
    return path


def merge(base, overrides):
    """Nested {section: {key: value}} merge; value None removes the key."""
    out = copy.deepcopy(base)
    for sec, kv in (overrides or {}).items():
        if kv is None:
            out.pop(sec, None)
            continue
        d = out.setdefault(sec, {})
        for k, v in kv.items():
            if v is None:
                d.pop(k, None)
            else:
                d[k] = v
    return out


# ------------------------------------------------------------------ comsim

class Sim(comsim_mod.SimProcess):
    """comsim as a child process, plus test conveniences."""

    def hellos(self, customer="C1001", system="pbx-hq", since=0):
        return self.events("hello", since, customer, system)

    def connected(self, customer="C1001", system="pbx-hq"):
        a = self.agent(customer, system)
        return bool(a and a["connected"])

    def send(self, message=None, raw=None, customer="C1001", system="pbx-hq"):
        body = {"customer": customer, "system": system}
        if raw is not None:
            body["raw"] = raw
        else:
            body["message"] = message
        return self.admin("POST", "/send", body)

    def barrier(self, since=0, customer="C1001", system="pbx-hq", timeout=5):
        """Round trip through the agent: a message of an unknown type is
        answered "unsupported" after everything the agent queued before it,
        so once the answer is here, nothing sent earlier is still in flight."""
        bid = 900000 + self.last_seq()
        self.send({"type": "test.barrier", "id": bid}, customer=customer,
                  system=system)
        return self.wait_message(lambda m: m["type"] == "unsupported"
                                 and m.get("re") == bid, since, timeout,
                                 "the agent's answer to a barrier message",
                                 customer, system)

    def wait_message(self, pred, since=0, timeout=5, what="a message from the agent",
                     customer="C1001", system="pbx-hq"):
        def find():
            for e in self.events("message", since, customer, system):
                m = e.get("msg")
                if m is not None and pred(m):
                    return m
            return None
        return wait_until(find, timeout, what)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """One CA with server certs for `localhost` and `wronghost`, shared."""
    d = str(tmp_path_factory.mktemp("pki"))
    comsim_mod.ensure_pki(d, "localhost")
    comsim_mod.ensure_pki(d, "wronghost")
    return d


@pytest.fixture
def comsim(tmp_path, pki):
    sims = []

    def make(customers=None, cert_name="localhost", start=True, extra_args=()):
        d = tmp_path / ("comsim%d" % len(sims))
        d.mkdir()
        for f in os.listdir(pki):
            shutil.copy(os.path.join(pki, f), d / f)
        s = Sim(str(d), customers=customers or [dict(DEFAULT_CUSTOMER)],
                cert_name=cert_name, extra_args=list(extra_args))
        sims.append(s)
        if start:
            s.start()
        return s

    yield make
    problems = []
    for s in sims:
        if s.running:
            try:
                problems += protocol_violations(s.events())
            except Exception as e:
                problems.append("could not read comsim events: %r" % e)
        try:
            rc = s.stop()
            if rc not in (0, None):
                problems.append("comsim exited %s" % rc)
        except Exception as e:
            problems.append("comsim stop: %r" % e)
        finally:
            s.kill()
        for run in range(1, s.runs + 1):
            p = os.path.join(s.dir, "comsim-%d.log" % run)
            try:
                log = open(p, errors="replace").read()
            except OSError:
                continue
            print("---- comsim log %s (tail)\n%s" % (p, tail(log, 60)))
            if "Traceback" in log:
                problems.append("comsim raised internally, see %s" % p)
    assert not problems, "; ".join(problems)


def protocol_violations(events):
    """What comsim saw the agent do against PROTOCOL.md, in any test:
    malformed messages, something other than hello first, ids that do not
    increase per link, answers to ack/error/unsupported."""
    out = []
    last_id = {}
    sent_types = {}
    for e in events:
        link = e.get("link")
        if e["kind"] == "protocol_error":
            out.append("link %s: %s" % (link, e.get("error")))
        elif e["kind"] == "sent" and isinstance(e.get("msg"), dict):
            sent_types.setdefault(link, {})[e["msg"].get("id")] = e["msg"].get("type")
        elif e["kind"] in ("hello", "message"):
            if e.get("error") and e["kind"] == "message":
                out.append("link %s: agent sent a bad frame: %s: %s" % (
                    link, e["error"], e.get("raw")))
                continue
            m = e.get("msg")
            if not isinstance(m, dict):
                continue
            mid = m.get("id")
            if isinstance(mid, int):
                if link in last_id and mid <= last_id[link]:
                    out.append("link %s: agent message id %s after %s (%s)" % (
                        link, mid, last_id[link], m.get("type")))
                last_id[link] = mid
            if m.get("type") in ("ack", "error", "unsupported") and "re" in m:
                answered = sent_types.get(link, {}).get(m["re"])
                if answered in ("ack", "error", "unsupported"):
                    out.append("link %s: agent answered comsim's %s (id %s) with %s" % (
                        link, answered, m["re"], m["type"]))
    return out


# ------------------------------------------------------------------ agent

class Agent:
    def __init__(self, sim, overrides=None, customer="C1001", system="pbx-hq",
                 user="COMAdmin", password="pw", url=None, ca_file=None,
                 env=None, run_as=None):
        need_binary()
        self.env = env
        self.root = tempfile.mkdtemp(prefix="cag-", dir="/tmp")   # short: unix socket
        # run_as=(uid, gid): the agent runs as that user (setpriv), over a
        # root tree it owns, with its own copy of the CA.
        self.run_as = run_as
        if run_as:
            ca_file = shutil.copy(ca_file or sim.ca,
                                  os.path.join(self.root, "ca.pem"))
        self.ini = os.path.join(self.root, "comagent.ini")
        self.log_path = os.path.join(self.root, "agent.stderr")
        self.customer, self.system = customer, system
        self.sim = sim
        base = {
            "com": {
                "url": url or "wss://localhost:%d/agent/v1" % sim.port,
                "ca_file": ca_file or sim.ca,
                "ping_interval": "1s",
                "idle_timeout": "3s",
                "connect_timeout": "3s",
                "retry_min": "100ms",
                "retry_max": "1s",
                "auth_retry_min": "30s",
                "auth_retry_max": "60s",
                "grace": "2s",
            },
            "system": {
                "profile": "linux",
                "customer_id": customer,
                "system_name": system,
                "root": self.root,
                # No probes of [network] servers unless a test asks: the
                # tunnel tests count every connection those servers get.
                "probe_interval": "0s",
            },
            "service_user": {"name": user, "password": password},
            "log": {"level": "debug"},
            # The repository's hooks; no automatic backup unless a test
            # asks (the host's clock may well be between 02:00 and 04:00).
            "jobs": {"hooks_dir": HOOKS_DIR, "auto_backup": "off"},
            # No syslog intake unless a test asks (agents run side by side).
            "logs": {"syslog": ""},
        }
        self.config = merge(base, overrides)
        write_ini(self.ini, self.config, 0o600)
        self.proc = None
        self.rc = None
        self.started_at = None
        self.cli_problems = []

    def start(self):
        assert self.proc is None
        self._logf = open(self.log_path, "ab")
        env = agent_env()
        env.update(self.env or {})
        cmd = [COMAGENT_BIN, "run", "-c", self.ini]
        if self.run_as:
            uid, gid = self.run_as
            for dp, dns, fns in os.walk(self.root):
                for n in [dp] + [os.path.join(dp, f) for f in dns + fns]:
                    os.lchown(n, uid, gid)
            cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid,
                   "--clear-groups", "--"] + cmd
        self.proc = subprocess.Popen(cmd,
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=self._logf, env=env,
                                     cwd=self.root)
        self.started_at = time.time()
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cli(self, *args, timeout=15):
        r = run_cli(*args, "-c", self.ini, timeout=timeout)
        bad = sanitizer_report(r.stdout + r.stderr)
        if bad and len(self.cli_problems) < 3:
            self.cli_problems.append("sanitizer report (%s) from `comagent %s`:\n%s" % (
                ", ".join(bad), " ".join(args), tail(r.stderr, 60)))
        return r

    def status(self):
        """`comagent status --json` as a dict; fails the test on error."""
        r = self.cli("status", "--json")
        assert r.returncode == 0, "status failed (%d): %s%s\n-- agent log:\n%s" % (
            r.returncode, r.stdout, r.stderr, tail(self.log()))
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise AssertionError("status --json printed no JSON: %r" % r.stdout)

    def try_status(self):
        """Like status(), None while the daemon does not answer (yet)."""
        if not self.running:
            raise AssertionError("comagent exited early (rc %s):\n%s" % (
                self.proc.poll() if self.proc else None, tail(self.log())))
        r = self.cli("status", "--json")
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def wait_status(self, pred, timeout=10, what="agent status"):
        last = [None]

        def check():
            s = self.try_status()
            last[0] = s
            return s if s is not None and pred(s) else None
        try:
            return wait_until(check, timeout, what, interval=0.1)
        except AssertionError as e:
            raise AssertionError("%s; last status: %r\n-- agent log:\n%s" % (
                e, last[0], tail(self.log())))

    def wait_connected(self, timeout=10):
        return self.wait_status(lambda s: s.get("code") == "connected", timeout,
                                "agent status connected")

    def stop(self, timeout=15):
        """SIGTERM; must exit 0 without sanitizer reports."""
        p = self.proc
        if p is None:
            return self.rc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            self.rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.rc = "killed"
            raise AssertionError("comagent ignored SIGTERM for %ss:\n%s" % (
                timeout, tail(self.log())))
        finally:
            self._logf.close()
        log = self.log()
        bad = sanitizer_report(log)
        assert not bad, "sanitizer report (%s) in comagent stderr:\n%s" % (
            ", ".join(bad), tail(log, 120))
        assert self.rc == 0, "comagent exited %s after SIGTERM:\n%s" % (
            self.rc, tail(log))
        return self.rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ctl(a, req):
    """One request on the agent's control socket; the whole answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(os.path.join(a.root, "run", "comagent", "comagent.sock"))
    s.sendall(req.encode() + b"\n")
    out = recv_all(s)
    s.close()
    return out.decode()


def recv_all(s):
    """Everything the peer sends until it closes."""
    out = b""
    while True:
        b = s.recv(4096)
        if not b:
            return out
        out += b


def never_connects(sim, a, what):
    """The agent keeps trying and failing (TLS refused): never a hello."""
    st = a.wait_status(lambda s: s.get("attempts", 0) >= 2
                       and s.get("state") == "Connection failed",
                       15, "'Connection failed' after two attempts (%s)" % what)
    assert st["code"] == "failed"
    assert st["reconnects"] == 0
    assert not sim.hellos(), "comsim got a hello despite %s" % what
    assert not sim.events("welcome")
    assert not sim.events("ws_open"), "WebSocket opened despite %s" % what
    # The agent did reach comsim: its TLS handshake failed, or (mbedTLS via
    # lws verifies after the handshake) it hung up before any HTTP request.
    wait_until(lambda: sim.events(("tls_error", "http_error")), 5,
               "comsim seeing the rejected connection")
    return st


@pytest.fixture
def agent(comsim):
    # Depends on comsim so that agents are stopped before comsim is.
    agents = []

    def make(sim, overrides=None, start=True, **kw):
        a = Agent(sim, overrides, **kw)
        agents.append(a)
        if start:
            a.start()
        return a

    yield make
    problems = []
    for a in agents:
        try:
            if a.proc is not None and a.rc is None:
                if a.proc.poll() is not None:
                    problems.append("comagent died during the test (rc %s)" % a.proc.returncode)
                    bad = sanitizer_report(a.log())
                    if bad:
                        problems.append("sanitizer report: %s" % ", ".join(bad))
                else:
                    a.stop()
        except AssertionError as e:
            problems.append(str(e))
        finally:
            problems += a.cli_problems
            a.kill()
            print("---- comagent stderr %s (tail)\n%s" % (a.log_path, tail(a.log(), 80)))
            shutil.rmtree(a.root, ignore_errors=True)
    assert not problems, "\n".join(problems)


@pytest.fixture
def proxy():
    proxies = []

    def make(user=None, password=None):
        p = ConnectProxy(user, password).start()
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return wait_until


# ------------------------------------------------------------------ settings

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes several seconds")


class DeadlineExceeded(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A hard per-test deadline (no pytest-timeout here): SIGALRM."""
    def expired(signum, frame):
        raise DeadlineExceeded("test exceeded %gs" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ tunnel servers
# Real local services for the remote-support tunnel tests (tunnelkit.py):
#   sshd                       a started tunnelkit.SSHD on 127.0.0.1 (own keys)
#   tcp_server(addrs, mode)    a started tunnelkit.TCPServer (factory)
#   https_server(names)        a started tunnelkit.HTTPSServer (factory)

@pytest.fixture
def sshd(tmp_path):
    import tunnelkit
    s = tunnelkit.SSHD(str(tmp_path / "sshd"))
    try:
        s.start()
        yield s
    finally:
        s.stop()
        print("---- sshd log (tail)\n%s" % tail(s.log(), 30))


@pytest.fixture
def tcp_server():
    import tunnelkit
    servers = []

    def make(addrs=("127.0.0.1",), mode="echo", port=0, nbytes=0):
        s = tunnelkit.TCPServer(addrs, mode, port, nbytes)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def https_server(tmp_path):
    import tunnelkit
    servers = []

    def make(names):
        s = tunnelkit.HTTPSServer(str(tmp_path / ("https%d" % len(servers))), names)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()
