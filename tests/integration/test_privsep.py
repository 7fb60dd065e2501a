"""Least privilege: the agent as its own (unprivileged) user with hooks run
as root through the hook runner (`comagent hook-runner`, what systemd's
comagent-hooks.socket starts per connection), the runner's refusals, the
control socket refusing other users, the modes of what the agent creates,
and the systemd units (verify, `systemd-analyze security` score)."""
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import COMAGENT_BIN, agent_env, recv_all, wait_until, write_ini
from test_jobs import job, linux_system, settings, start, wait_final

NOBODY = (65534, 65534)
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOOK_NAMES = ("backup", "restore", "transfer-check", "upgrade",
              "restart-phones", "reboot", "certificate")


class Runner:
    """systemd's comagent-hooks.socket (Accept=yes) in miniature: one
    `comagent hook-runner -c INI` per connection, the connection as its
    stdin; the socket is root's with the agent's group, mode 0660."""

    def __init__(self, group):
        self.dir = tempfile.mkdtemp(prefix="cag-run-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "hooks.sock")
        self.ini = os.path.join(self.dir, "runner.ini")
        self.log_path = os.path.join(self.dir, "runner.log")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        os.chown(self.path, 0, group)
        os.chmod(self.path, 0o660)
        self.srv.listen(8)
        self.procs = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        log = open(self.log_path, "ab")
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            p = subprocess.Popen([COMAGENT_BIN, "hook-runner", "-c", self.ini],
                                 stdin=conn.fileno(), stdout=log, stderr=log,
                                 env=agent_env())
            conn.close()
            self.procs.append(p)

    def configure(self, ini):
        """The runner reads its own copy: root's, 0600, like /etc/comagent."""
        shutil.copy(ini, self.ini)
        os.chmod(self.ini, 0o600)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        self.srv.close()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_hooks(tmp_path, scripts):
    """A hooks dir (root's, 0755) whose linux/NAME run the given shell
    text; the others are the repository's."""
    d = tmp_path / "hooks"
    shutil.copytree(os.path.join(REPO, "scripts"), d,
                    ignore=shutil.ignore_patterns("*.md"))
    for name, text in scripts.items():
        p = d / "linux" / name
        p.write_text("#!/bin/sh\n" + text)
        p.chmod(0o755)
    for dp, dns, fns in os.walk(d):
        os.chmod(dp, 0o755)
    os.chmod(tmp_path, 0o755)
    return str(d)


@pytest.fixture
def runner():
    made = []

    def make(a):
        r = Runner(a.run_as[1] if a.run_as else 0)
        made.append(r)
        r.configure(a.ini)
        return r
    yield make
    for r in made:
        r.close()


def privsep_agent(agent, sim, tmp_path, runner, scripts, **jobs):
    """The agent as nobody, its hooks through a runner."""
    hooks = make_hooks(tmp_path, scripts)
    o = {"jobs": dict({"hooks_dir": hooks}, **jobs)}
    a = agent(sim, {"system": {"profile": "linux"}, **o}, start=False,
              run_as=NOBODY)
    r = runner(a)
    a.config["jobs"]["hook_runner"] = r.path
    write_ini(a.ini, a.config, 0o600)
    r.configure(a.ini)
    linux_system(a)
    settings(a, remoteupgrade=True)
    a.start()
    a.wait_connected()
    return a, r


# A hook that says where it is and then runs for an hour.
SLEEPER = 'echo $$ > "$COMAGENT_ROOT/hook.pid"; exec sleep 3600\n'


def hook_pid(a):
    try:
        with open(os.path.join(a.root, "hook.pid")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))


def test_hooks_run_as_root_through_the_runner(comsim, agent, tmp_path, runner):
    sim = comsim()
    a, r = privsep_agent(agent, sim, tmp_path, runner, {
        "backup": 'id -u > "$COMAGENT_ROOT/hook-uid"\n'
                  'exec %s/scripts/linux/backup "$@"\n' % REPO})
    assert proc_uid(a.proc.pid) == NOBODY[0]
    jid = job(sim, "backup")
    st = wait_final(sim, jid, 60)
    assert st["state"] == "succeeded", (st, r.log(), a.log()[-3000:])
    with open(os.path.join(a.root, "hook-uid")) as f:
        assert f.read().strip() == "0"
    assert re.search(r"running \S+/linux/backup \(pid \d+\)", r.log())
    assert "started through the hook runner" in a.log()


def test_runner_unreachable_fails_the_job_clearly(comsim, agent):
    sim = comsim()
    a = start(agent, sim, overrides={"jobs": {"hook_runner": "/nonexistent/hooks.sock"}})
    st = wait_final(sim, job(sim, "backup"))
    assert st["state"] == "failed"
    assert "through the hook runner /nonexistent/hooks.sock" in st["message"], st
    assert "cannot reach the hook runner at /nonexistent/hooks.sock: No such file" in a.log()


def test_hook_timeout_reaches_the_hook_through_the_runner(comsim, agent, tmp_path,
                                                          runner):
    sim = comsim()
    a, r = privsep_agent(agent, sim, tmp_path, runner,
                         {"backup": SLEEPER}, hook_timeout="10s")
    st = wait_final(sim, job(sim, "backup"), 40)
    assert st["state"] == "failed"
    assert "killed after 10 s (timeout)" in st["message"], st
    pid = hook_pid(a)
    assert re.search(r"hook pid %d killed by signal 15" % pid, r.log())
    assert not os.path.exists("/proc/%d" % pid)


def test_agent_gone_ends_the_hook(comsim, agent, tmp_path, runner):
    sim = comsim()
    a, r = privsep_agent(agent, sim, tmp_path, runner,
                         {"backup": SLEEPER})
    job(sim, "backup")
    pid = wait_until(lambda: hook_pid(a), 15, "the hook running")
    assert proc_uid(pid) == 0
    a.kill()
    a.rc = "killed"
    wait_until(lambda: "the agent went away; ending the hook" in r.log(), 10,
               "the runner noticing")
    wait_until(lambda: not os.path.exists("/proc/%d" % pid), 10,
               "the hook ended")
    wait_until(lambda: all(p.poll() is not None for p in r.procs), 10,
               "the runner exiting")


def _ask_runner(r, lines, fds=True):
    """Sends a raw request; returns (answer, what the hook wrote)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(r.path)
    data = "".join(l + "\n" for l in lines).encode()
    if fds:
        socket.send_fds(s, [data], [null, out_w, err_w])
    else:
        s.sendall(data)
    for fd in (null, out_w, err_w):
        os.close(fd)
    ans = recv_all(s)
    s.close()
    outs = []
    for fd in (out_r, err_r):
        with open(fd, "rb") as f:
            outs.append(f.read().decode())
    return ans.decode(), outs


@pytest.mark.parametrize("lines,fds,why", [
    (["hook evil", "end"], True, 'no hook named "evil"'),
    (["hook ../../bin/sh", "end"], True, "no hook named"),
    (["hook backup", "env PATH=/tmp/evil", "end"], True,
     "is not COMAGENT_NAME=VALUE"),
    (["hook backup", "env LD_PRELOAD=/tmp/x.so", "end"], True,
     "is not COMAGENT_NAME=VALUE"),
    (["hook backup", "hook restore", "end"], True, "two hook names"),
    (["hook backup", "frobnicate x", "end"], True, "unknown request line"),
    (["hook backup"] + ["arg x"] * 33 + ["end"], True, "more than 32 arguments"),
    (["hook backup", "end"], False, "no descriptors"),
    (["arg x", "end"], True, "no hook name"),
])
def test_runner_refuses_bad_requests(comsim, agent, tmp_path, runner, lines,
                                     fds, why):
    sim = comsim()
    marker = tmp_path / "ran"
    hooks = make_hooks(tmp_path, {"backup": "touch %s\n" % marker})
    a = agent(sim, {"jobs": {"hooks_dir": hooks}}, start=False)
    r = runner(a)
    ans, _ = _ask_runner(r, lines, fds)
    assert ans.startswith("error ") and why in ans, ans
    assert "refused: " in r.log()
    assert not marker.exists()


def test_runner_runs_a_good_request_and_refuses_writable_hooks(comsim, agent,
                                                               tmp_path, runner):
    sim = comsim()
    hooks = make_hooks(tmp_path, {
        "backup": 'echo "progress 50 half"; echo "args $*" >&2; '
                  'echo "env $COMAGENT_JOB" >&2; exit 3\n'})
    a = agent(sim, {"jobs": {"hooks_dir": hooks}}, start=False)
    r = runner(a)
    ans, (out, err) = _ask_runner(r, ["hook backup", "arg one", "arg two words",
                                      "env COMAGENT_JOB=J-7", "end"])
    assert ans == "exit 3\n"
    assert out == "progress 50 half\n"
    assert err == "args one two words\nenv J-7\n"
    # A hooks directory others may write: whoever can write it chooses what
    # runs as root.
    os.chmod(os.path.join(hooks, "linux"), 0o777)
    ans, _ = _ask_runner(r, ["hook backup", "end"])
    assert ans.startswith("error ") and "is not root's alone" in ans, ans
    os.chmod(os.path.join(hooks, "linux"), 0o755)
    # The runner's own configuration must be root's alone too.
    os.chown(r.ini, NOBODY[0], NOBODY[1])
    ans, _ = _ask_runner(r, ["hook backup", "end"])
    assert ans.startswith("error ") and "runner.ini is not root's alone" in ans


# ------------------------------------------------------------ control socket

PEER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("CONNECT-ERROR", e.errno)
    sys.exit(0)
try:
    s.sendall(b"status text\n")
except OSError:
    pass
out = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    out += b
print(out.decode())
"""


def _as_user(path, uid, gid, groups=None):
    cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
    cmd += ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(cmd + ["/usr/bin/python3", "-c", PEER, path],
                          capture_output=True, text=True, timeout=20).stdout


def test_control_socket_refuses_other_users(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected()
    sock = os.path.join(a.root, "run", "comagent", "comagent.sock")
    assert os.stat(sock).st_mode & 0o777 == 0o660
    # The file system is the first gate: nobody cannot even connect.
    for d in (a.root, os.path.join(a.root, "run"), os.path.dirname(sock)):
        os.chmod(d, 0o755)
    assert _as_user(sock, *NOBODY).startswith("CONNECT-ERROR 13")
    # Made reachable by mistake, the agent itself still refuses them ...
    os.chmod(sock, 0o666)
    out = _as_user(sock, *NOBODY)
    assert out.startswith("error: not allowed"), out
    wait_until(lambda: re.search(r"control socket: uid 65534 pid \d+ refused",
                                 a.log()), 5, "the refusal in the log")
    # ... but answers its group (the agent runs as root here: group 0),
    # primary or supplementary.
    assert "Connection:" in _as_user(sock, 65534, 0)
    assert "Connection:" in _as_user(sock, 65534, 65534, groups=[0])
    assert "Connection:" in a.cli("status").stdout


def test_created_files_are_private(comsim, agent):
    sim = comsim()
    # Nothing made beforehand: every directory is the agent's own doing.
    a = agent(sim, {"system": {"profile": "linux"}}, start=False)
    linux_system(a)
    assert "saved" in a.cli("settings", "set", "remoteupgrade=on").stdout
    a.start()
    a.wait_connected()
    st = wait_final(sim, job(sim, "backup"))
    assert st["state"] == "succeeded"
    wait_until(lambda: a.status()["custom"]["refresh"] not in ("never", "running"),
               20, "the first custom refresh")
    bad = []
    seen = 0
    for top in ("var/lib/comagent", "var/log", "run/comagent"):
        for dp, dns, fns in os.walk(os.path.join(a.root, top)):
            for n in [dp] + [os.path.join(dp, f) for f in fns]:
                m = os.lstat(n).st_mode & 0o777
                seen += 1
                if n.endswith("comagent.sock"):
                    ok = m == 0o660
                elif top != "var/lib/comagent":
                    ok = m & 0o027 == 0   # the log, the socket's dir: group
                else:
                    ok = m & 0o077 == 0
                if not ok:
                    bad.append("%s %o" % (os.path.relpath(n, a.root), m))
    assert seen > 10
    assert not bad, bad


# ------------------------------------------------------------ systemd units

def _render_units(tmp_path):
    d = tmp_path / "units"
    d.mkdir()
    bindir = os.path.dirname(os.path.abspath(COMAGENT_BIN))
    for src in glob.glob(os.path.join(REPO, "config", "comagent*")):
        name = os.path.basename(src)
        if not (name.endswith(".in") or name.endswith(".socket")):
            continue
        with open(src) as f:
            text = f.read().replace("@BINDIR@", bindir)
        (d / name.removesuffix(".in")).write_text(text)
    return d


def test_systemd_units_verify_and_score(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze missing (scripts/deps.sh installs systemd)")
    d = _render_units(tmp_path)
    units = sorted(os.listdir(d))
    assert units == ["comagent-hooks.socket", "comagent-hooks@.service",
                     "comagent.service"]
    # --man=no: Documentation=man:comagent(8) is only there once installed
    # (test_package.py verifies the installed units with it).
    r = subprocess.run(["systemd-analyze", "verify", "--man=no"] + units, cwd=d,
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=true",
                        "comagent.service"], cwd=d, capture_output=True, text=True)
    m = re.search(r"Overall exposure level for comagent.service: ([0-9.]+)",
                  r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0, r.stdout
    unit = (d / "comagent.service").read_text()
    for opt in ("User=comagent", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "PrivateTmp=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"):
        assert opt in unit


def test_runner_refusal_fails_the_job_with_its_reason(comsim, agent, tmp_path,
                                                      runner):
    sim = comsim()
    a, r = privsep_agent(agent, sim, tmp_path, runner,
                         {"backup": "touch %s/ran\n" % tmp_path})
    # Someone made the profile's hook directory writable to all.
    os.chmod(os.path.join(a.config["jobs"]["hooks_dir"], "linux"), 0o777)
    st = wait_final(sim, job(sim, "backup"))
    assert st["state"] == "failed"
    assert st["message"].startswith("backup: hook runner: "), st
    assert "is not root's alone" in st["message"], st
    assert not (tmp_path / "ran").exists()
