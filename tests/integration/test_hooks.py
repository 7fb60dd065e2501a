"""The platform hooks of scripts/<profile>/, run the way the agent runs them
(scripts/HOOKS.md §2: exactly the documented environment, working directory
/, stdin /dev/null) on a temporary root: restore (round trips with backup,
elements, unsafe archives, space, an interrupted run), transfer-check,
upgrade, restart-phones, reboot and certificate (more of it in
test_cert.py) — never with root /.

    /usr/bin/python3 -m pytest -q tests/integration/test_hooks.py
"""

import calendar
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPTS = os.path.join(REPO, "scripts")
LIB = os.path.join(SCRIPTS, "lib", "hooklib.sh")
PROFILES = ("linux", "ip500v2")
NEW_HOOKS = ("restore", "transfer-check", "upgrade", "restart-phones", "reboot",
             "certificate")
HOOKS = ("backup",) + NEW_HOOKS
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BACKUP_DIRS = "etc/ipoffice var/lib/ipoffice"
JOB = "J-20261123-0042"
TIB = 1 << 40
PROGRESS = re.compile(r"^progress (\d+)(?: (.*))?$")
RESTORE_STEPS = [(10, "checking"), (40, "extracting"), (80, "replacing"),
                 (100, "done")]
UPGRADE_STEPS = [(10, "checking"), (50, "installing"), (90, "switching"),
                 (100, "done")]


# ------------------------------------------------------------------ harness

class Result:
    def __init__(self, proc):
        self.status = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.progress = []
        for line in proc.stdout.splitlines():
            m = PROGRESS.match(line)
            # The hooks print nothing else on stdout.
            assert m, "not a progress line on stdout: %r" % line
            self.progress.append((int(m.group(1)), m.group(2) or ""))
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        self.reason = lines[-1] if lines else ""

    def __repr__(self):
        return "<exit %d, stdout %r, stderr %r>" % (self.status, self.out, self.err)


class Root:
    """A temporary system root for one profile, with the agent's state
    directory under it; `out` is a directory outside the root (downloads,
    backups)."""

    def __init__(self, tmp_path, profile):
        self.profile = profile
        self.tmp = str(tmp_path)
        self.path = os.path.join(self.tmp, "root")
        self.state = os.path.join(self.path, "var/lib/comagent")
        self.out = os.path.join(self.tmp, "out")
        os.makedirs(self.state)
        os.makedirs(self.out)
        # Commands that would restart a machine, as spies that only record
        # being called. Every run of the reboot hook has them first in PATH,
        # so that even a broken hook would call them, not the real ones.
        self.spies = os.path.join(self.tmp, "spies")
        self.spy_calls = os.path.join(self.tmp, "spy-calls")
        os.makedirs(self.spies)
        for name in ("systemctl", "reboot", "shutdown", "halt", "poweroff",
                     "init", "telinit"):
            spy = os.path.join(self.spies, name)
            with open(spy, "w") as f:
                f.write("#!/bin/sh\necho %s \"$@\" >> '%s'\n" % (name, self.spy_calls))
            os.chmod(spy, 0o755)

    def env(self):
        """Exactly the environment of HOOKS.md §2 (and COMAGENT_BACKUP_DIRS,
        which the agent passes to the linux hooks)."""
        env = {"PATH": PATH, "LANG": "C", "COMAGENT_ROOT": self.path,
               "COMAGENT_PROFILE": self.profile,
               "COMAGENT_STATE_DIR": self.state, "COMAGENT_JOB": JOB}
        if self.profile == "linux":
            env["COMAGENT_BACKUP_DIRS"] = BACKUP_DIRS
        return env

    def run(self, hook, *args, env=None, profile=None):
        path = os.path.join(SCRIPTS, profile or self.profile, hook)
        env = dict(self.env() if env is None else env)
        assert env.get("COMAGENT_ROOT") != "/", "never run a hook on root /"
        if hook == "reboot":
            env["PATH"] = self.spies + ":" + env.get("PATH", PATH)
        proc = subprocess.run([path, *args], env=env, cwd="/",
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120)
        if hook == "reboot":
            assert not os.path.exists(self.spy_calls), \
                "the reboot hook tried to restart the machine: " + open(self.spy_calls).read()
        return Result(proc)

    def p(self, rel):
        return os.path.join(self.path, rel)

    def put(self, rel, data, mode=0o644):
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(path, mode)

    def read(self, rel):
        with open(self.p(rel), "rb") as f:
            return f.read()

    def text(self, rel):
        return self.read(rel).decode()

    def snapshot(self):
        """Every path under the root: type, mode, and content or target."""
        snap = {}
        for top, dirs, files in os.walk(self.path):
            for name in dirs + files:
                path = os.path.join(top, name)
                rel = os.path.relpath(path, self.path)
                st = os.lstat(path)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    snap[rel] = ("l", os.readlink(path))
                elif stat.S_ISDIR(st.st_mode):
                    snap[rel] = ("d", mode)
                else:
                    with open(path, "rb") as f:
                        snap[rel] = ("f", mode, f.read())
        return snap


@pytest.fixture(params=PROFILES)
def root(request, tmp_path):
    return Root(tmp_path, request.param)


@pytest.fixture
def lroot(tmp_path):
    return Root(tmp_path, "linux")


@pytest.fixture
def iroot(tmp_path):
    return Root(tmp_path, "ip500v2")


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def leftovers(root):
    """Temporary names a hook must not leave behind."""
    marks = (".tmp", ".restore-new", ".restore-old", ".upgrade-old")
    return sorted(rel for rel in root.snapshot()
                  if any(m in os.path.basename(rel) for m in marks))


# ------------------------------------------------------------------ archives

def make_linux_config(root):
    root.put("etc/ipoffice/system.cfg", "name=pbx-hq\n")
    root.put("etc/ipoffice/users/u100", "ext=100\n", 0o600)
    root.put("etc/ipoffice/users/u101", "ext=101\n")
    root.put("var/lib/ipoffice/voicemail/greeting", bytes(range(256)) * 40)
    root.put("var/lib/ipoffice/voicemail/my greeting.wav", "RIFF\n")
    os.makedirs(root.p("var/lib/ipoffice/empty"))
    root.put("etc/ipoffice-version", "11.1.3.0\n")
    root.put("var/lib/comagent/jobs", "[]\n", 0o600)


def make_ip500_config(root):
    root.put("config/config.cfg", b"\x00IPO config\xff" * 100, 0o600)
    root.put("config/other.txt", "not part of a backup\n")
    root.put("etc/ipoffice-version", "11.1.3.0\n")


def backup(root, *elements, name="b.tar.gz"):
    out = os.path.join(root.out, name)
    r = root.run("backup", out, *elements)
    assert r.status == 0, r
    return out


def craft(root, members, name="evil.tar.gz", gz=True):
    """An archive of (name, type, payload) members: type 'f' file (payload
    bytes), 'd' directory, 'l' symlink / 'h' hard link (payload target),
    'c' character device, 'p' fifo."""
    path = os.path.join(root.out, name)
    with tarfile.open(path, "w:gz" if gz else "w",
                      format=tarfile.GNU_FORMAT) as t:
        for mname, kind, payload in members:
            ti = tarfile.TarInfo(mname)
            ti.mode = 0o644
            if kind == "f":
                ti.size = len(payload)
                t.addfile(ti, io.BytesIO(payload))
                continue
            ti.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
                       "h": tarfile.LNKTYPE, "c": tarfile.CHRTYPE,
                       "p": tarfile.FIFOTYPE}[kind]
            if kind in "lh":
                ti.linkname = payload
            if kind == "d":
                ti.mode = 0o755
            if kind == "c":
                ti.devmajor, ti.devminor = 1, 3
            t.addfile(ti)
    return path


def sparse_archive(root, member, size=TIB):
    """A tiny gzip tar (GNU sparse) whose member really is `size` bytes long
    once extracted: its listing says so, and restore must refuse it for
    space, honestly."""
    src = os.path.join(root.tmp, "sparse-src")
    path = os.path.join(src, member)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.truncate(size)
    out = os.path.join(root.out, "sparse.tar.gz")
    subprocess.run(["tar", "-C", src, "-c", "-z", "-S", "--format=gnu",
                    "-f", out, member], check=True)
    shutil.rmtree(src)
    return out


def skip_if_room(path, size):
    if free_bytes(path) >= size + (size >> 2):
        pytest.skip("the file system of %s has room for %d bytes: no way "
                    "to run out of space here" % (path, size))


# ------------------------------------------------------------------ files

@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("hook", HOOKS)
def test_hook_file(profile, hook):
    path = os.path.join(SCRIPTS, profile, hook)
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o755
    with open(path) as f:
        assert f.readline() == "#!/bin/bash\n"
    r = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_library_file():
    assert stat.S_IMODE(os.stat(LIB).st_mode) == 0o644
    r = subprocess.run(["bash", "-n", LIB], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed")
    paths = [os.path.join(SCRIPTS, p, h) for p in PROFILES for h in HOOKS]
    r = subprocess.run(["shellcheck", "-x", LIB, *paths], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


ARGS = {"restore": ["/nonexistent.tar.gz"],
        "transfer-check": ["/nonexistent-staging", "1"],
        "upgrade": ["/nonexistent-staging", "/nonexistent.json"],
        "restart-phones": [], "reboot": [],
        "certificate": ["/nonexistent.pem", "/nonexistent.key"]}


@pytest.mark.parametrize("hook", NEW_HOOKS)
def test_environment_mismatch(root, hook):
    """The wrong profile, or no COMAGENT_ROOT, is an agent/hook mismatch:
    exit 2, and nothing written."""
    before = root.snapshot()
    env = root.env()
    env["COMAGENT_PROFILE"] = "ip500v2" if root.profile == "linux" else "linux"
    r = root.run(hook, *ARGS[hook], env=env)
    assert r.status == 2, r
    assert "COMAGENT_PROFILE" in r.reason
    env = root.env()
    del env["COMAGENT_ROOT"]
    r = root.run(hook, *ARGS[hook], env=env)
    assert (r.status, r.reason) == (2, "COMAGENT_ROOT is not set"), r
    assert root.snapshot() == before


# ------------------------------------------------------------------ restore

def test_restore_linux_round_trip(lroot):
    make_linux_config(lroot)
    before = lroot.snapshot()
    archive = backup(lroot)
    lroot.put("etc/ipoffice/system.cfg", "name=changed\n")
    os.unlink(lroot.p("etc/ipoffice/users/u100"))
    lroot.put("etc/ipoffice/users/u200", "ext=200\n")
    lroot.put("etc/ipoffice/new/x", "new\n")
    os.chmod(lroot.p("etc/ipoffice/users/u101"), 0o600)
    shutil.rmtree(lroot.p("var/lib/ipoffice/voicemail"))
    assert lroot.snapshot() != before
    r = lroot.run("restore", archive)
    assert r.status == 0, r
    assert r.progress == RESTORE_STEPS
    assert lroot.snapshot() == before
    # The backup stored mtime 0; restored files get the time of the restore.
    assert os.stat(lroot.p("etc/ipoffice/system.cfg")).st_mtime > time.time() - 300
    # Again: the same result.
    r = lroot.run("restore", archive)
    assert r.status == 0, r
    assert lroot.snapshot() == before


def test_restore_linux_hard_links(lroot):
    """Hard-linked files are backed up as files (a link member would be
    refused by restore) and restored with their contents."""
    make_linux_config(lroot)
    os.link(lroot.p("etc/ipoffice/system.cfg"), lroot.p("etc/ipoffice/users/system.cfg"))
    before = lroot.snapshot()
    archive = backup(lroot)
    lroot.put("etc/ipoffice/system.cfg", "name=changed\n")
    r = lroot.run("restore", archive)
    assert r.status == 0, r
    assert lroot.snapshot() == before


def test_restore_linux_default_dirs(lroot):
    """Without COMAGENT_BACKUP_DIRS both hooks use etc/ipoffice and
    var/lib/ipoffice."""
    make_linux_config(lroot)
    before = lroot.snapshot()
    env = lroot.env()
    del env["COMAGENT_BACKUP_DIRS"]
    out = os.path.join(lroot.out, "b.tar.gz")
    assert lroot.run("backup", out, env=env).status == 0
    lroot.put("var/lib/ipoffice/voicemail/greeting", "changed\n")
    lroot.put("etc/ipoffice/system.cfg", "changed\n")
    r = lroot.run("restore", out, env=env)
    assert r.status == 0, r
    assert lroot.snapshot() == before


def test_restore_linux_backup_dirs_limit(lroot):
    """Only what COMAGENT_BACKUP_DIRS names may be restored: a backup that
    holds more is refused whole."""
    make_linux_config(lroot)
    archive = backup(lroot)
    lroot.put("etc/ipoffice/system.cfg", "changed\n")
    before = lroot.snapshot()
    env = lroot.env()
    env["COMAGENT_BACKUP_DIRS"] = "etc/ipoffice"
    r = lroot.run("restore", archive, env=env)
    assert r.status == 1, r
    assert r.reason == "unsafe backup: member outside etc/ipoffice opt/vmpro: var/lib/ipoffice/"
    assert lroot.snapshot() == before


def test_restore_linux_element(lroot):
    make_linux_config(lroot)
    archive = backup(lroot)
    lroot.put("etc/ipoffice/users/u100", "ext=changed\n", 0o600)
    lroot.put("etc/ipoffice/users/u300", "ext=300\n")
    lroot.put("etc/ipoffice/system.cfg", "name=changed\n")
    lroot.put("var/lib/ipoffice/voicemail/greeting", "changed\n")
    r = lroot.run("restore", archive, "users")
    assert r.status == 0, r
    assert r.progress == RESTORE_STEPS
    assert lroot.text("etc/ipoffice/users/u100") == "ext=100\n"
    assert not os.path.exists(lroot.p("etc/ipoffice/users/u300"))
    # Outside the element: untouched.
    assert lroot.text("etc/ipoffice/system.cfg") == "name=changed\n"
    assert lroot.text("var/lib/ipoffice/voicemail/greeting") == "changed\n"
    assert leftovers(lroot) == []


def test_restore_linux_element_backup(lroot):
    """A backup of some elements, restored without naming them, restores
    those elements and leaves the rest of the directory alone."""
    make_linux_config(lroot)
    archive = backup(lroot, "users", "voicemail")
    lroot.put("etc/ipoffice/users/u100", "ext=changed\n", 0o600)
    lroot.put("var/lib/ipoffice/voicemail/greeting", "changed\n")
    lroot.put("etc/ipoffice/system.cfg", "name=changed\n")
    r = lroot.run("restore", archive)
    assert r.status == 0, r
    assert lroot.text("etc/ipoffice/users/u100") == "ext=100\n"
    assert lroot.read("var/lib/ipoffice/voicemail/greeting") == bytes(range(256)) * 40
    assert lroot.text("etc/ipoffice/system.cfg") == "name=changed\n"
    assert os.path.isdir(lroot.p("var/lib/ipoffice/empty"))


def test_restore_linux_element_errors(lroot):
    make_linux_config(lroot)
    archive = backup(lroot, "users")
    before = lroot.snapshot()
    r = lroot.run("restore", archive, "voicemail")
    assert (r.status, r.reason) == (1, "element not found in the backup: voicemail"), r
    r = lroot.run("restore", archive, "users", "nope")
    assert (r.status, r.reason) == (1, "element not found in the backup: nope"), r
    r = lroot.run("restore", archive, "../etc")
    assert (r.status, r.reason) == (2, "bad element name: ../etc"), r
    assert lroot.snapshot() == before


def test_restore_ip500_round_trip(iroot):
    make_ip500_config(iroot)
    before = iroot.snapshot()
    archive = backup(iroot)
    iroot.put("config/config.cfg", "changed\n", 0o644)
    assert iroot.snapshot() != before
    r = iroot.run("restore", archive)
    assert r.status == 0, r
    assert r.progress == RESTORE_STEPS
    assert iroot.snapshot() == before
    # The one element, by name; and a config that was removed.
    os.unlink(iroot.p("config/config.cfg"))
    r = iroot.run("restore", archive, "config")
    assert r.status == 0, r
    assert iroot.snapshot() == before


def test_restore_ip500_elements(iroot):
    make_ip500_config(iroot)
    archive = backup(iroot)
    before = iroot.snapshot()
    r = iroot.run("restore", archive, "users")
    assert r.status == 1, r
    assert r.reason == "unknown element: users (IP500 V2 has only: config)"
    assert iroot.snapshot() == before


def test_restore_usage(root):
    r = root.run("restore")
    assert r.status == 2 and r.reason.startswith("usage: restore ARCHIVE"), r
    r = root.run("restore", "relative.tar.gz")
    assert (r.status, r.reason) == (2, "ARCHIVE must be an absolute path: relative.tar.gz"), r
    missing = os.path.join(root.out, "missing.tar.gz")
    r = root.run("restore", missing)
    assert (r.status, r.reason) == (1, "no backup archive at " + missing), r


GOOD = [("etc/ipoffice/", "d", None), ("etc/ipoffice/system.cfg", "f", b"evil\n")]

UNSAFE_LINUX = {
    "absolute": (GOOD + [("/etc/ipoffice/x", "f", b"x\n")],
                 "unsafe backup: absolute member name /etc/ipoffice/x"),
    "dotdot": ([("../x", "f", b"x\n")], "unsafe backup: '..' in member name ../x"),
    "dotdot-inside": (GOOD + [("etc/ipoffice/../../x", "f", b"x\n")],
                      "unsafe backup: '..' in member name etc/ipoffice/../../x"),
    "symlink": (GOOD + [("etc/ipoffice/link", "l", "/etc/passwd")],
                "unsafe backup: symbolic link etc/ipoffice/link"),
    "hardlink": (GOOD + [("etc/ipoffice/hard", "h", "etc/ipoffice/system.cfg")],
                 "unsafe backup: hard link etc/ipoffice/hard"),
    "device": (GOOD + [("etc/ipoffice/null", "c", None)],
               "unsafe backup: device or fifo etc/ipoffice/null"),
    "fifo": (GOOD + [("etc/ipoffice/fifo", "p", None)],
             "unsafe backup: device or fifo etc/ipoffice/fifo"),
    "outside": (GOOD + [("etc/passwd", "f", b"root::0:0\n")],
                "unsafe backup: member outside etc/ipoffice var/lib/ipoffice opt/vmpro: etc/passwd"),
    "prefix": (GOOD + [("etc/ipoffice-evil/x", "f", b"x\n")],
               "unsafe backup: member outside etc/ipoffice var/lib/ipoffice opt/vmpro: "
               "etc/ipoffice-evil/x"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_LINUX))
def test_restore_linux_unsafe(lroot, case):
    members, reason = UNSAFE_LINUX[case]
    make_linux_config(lroot)
    before = lroot.snapshot()
    archive = craft(lroot, members)
    r = lroot.run("restore", archive)
    assert (r.status, r.reason) == (1, reason), r
    assert lroot.snapshot() == before
    assert not os.path.exists(os.path.join(lroot.tmp, "x"))
    assert not os.path.exists(os.path.join(lroot.path, "x"))


UNSAFE_IP500 = {
    "other-file": ([("config/config.cfg", "f", b"c\n"), ("config/other.txt", "f", b"x\n")],
                   "unsafe backup: member outside config/config.cfg: config/other.txt"),
    "directory-entry": ([("config/", "d", None), ("config/config.cfg", "f", b"c\n")],
                        "unsafe backup: member outside config/config.cfg: config/"),
    "symlink": ([("config/config.cfg", "l", "/etc/shadow")],
                "unsafe backup: symbolic link config/config.cfg"),
    "absolute": ([("/config/config.cfg", "f", b"c\n")],
                 "unsafe backup: absolute member name /config/config.cfg"),
    "dotdot": ([("../x", "f", b"x\n")], "unsafe backup: '..' in member name ../x"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_IP500))
def test_restore_ip500_unsafe(iroot, case):
    members, reason = UNSAFE_IP500[case]
    make_ip500_config(iroot)
    before = iroot.snapshot()
    archive = craft(iroot, members)
    r = iroot.run("restore", archive)
    assert (r.status, r.reason) == (1, reason), r
    assert iroot.snapshot() == before
    assert not os.path.exists(os.path.join(iroot.tmp, "x"))


def test_restore_not_gzip(root):
    (make_linux_config if root.profile == "linux" else make_ip500_config)(root)
    before = root.snapshot()
    junk = os.path.join(root.out, "junk.tar.gz")
    with open(junk, "wb") as f:
        f.write(b"this is not a backup\n" * 10)
    r = root.run("restore", junk)
    assert r.status == 1, r
    assert r.reason == "cannot read the backup %s: gzip: stdin: not in gzip format" % junk
    # A tar that is not compressed is no backup of ours either.
    member = "etc/ipoffice/system.cfg" if root.profile == "linux" else "config/config.cfg"
    plain = craft(root, [(member, "f", b"x\n")], name="plain.tar", gz=False)
    r = root.run("restore", plain)
    assert r.status == 1 and r.reason.startswith("cannot read the backup " + plain), r
    # Nor is an empty one.
    empty = craft(root, [], name="empty.tar.gz")
    r = root.run("restore", empty)
    assert (r.status, r.reason) == (1, "the backup %s is empty" % empty), r
    assert root.snapshot() == before


def test_restore_not_enough_space(root):
    """A GNU sparse member: a tiny archive that really expands to 1 TiB.
    Its listing says so, and restore refuses it before extracting."""
    skip_if_room(root.path, TIB)
    (make_linux_config if root.profile == "linux" else make_ip500_config)(root)
    member = "etc/ipoffice/huge" if root.profile == "linux" else "config/config.cfg"
    archive = sparse_archive(root, member)
    assert os.path.getsize(archive) < 4096
    before = root.snapshot()
    r = root.run("restore", archive)
    assert r.status == 3, r
    m = re.fullmatch(r"not enough space: need (\d+) KiB, have (\d+) KiB", r.reason)
    assert m, r.reason
    assert int(m.group(1)) >= TIB // 1024
    assert int(m.group(2)) < int(m.group(1))
    assert r.progress == [(10, "checking")]
    assert root.snapshot() == before


def test_restore_linux_fails_before_replacing(lroot):
    """A unit that fails to extract as what it must be leaves every unit as
    it was, those before it included."""
    make_linux_config(lroot)
    before = lroot.snapshot()
    archive = craft(lroot, GOOD + [("var/lib/ipoffice", "f", b"a file\n")])
    r = lroot.run("restore", archive)
    assert (r.status, r.reason) == (1, "not a directory in the backup: var/lib/ipoffice"), r
    assert lroot.snapshot() == before


def test_restore_linux_after_interrupted_run(lroot):
    """What a run killed midway leaves (an old copy moved aside with nothing
    in its place, a half-extracted copy) is cleaned up by the next run."""
    make_linux_config(lroot)
    before = lroot.snapshot()
    archive = backup(lroot)
    os.rename(lroot.p("etc/ipoffice"), lroot.p("etc/ipoffice.restore-old"))
    lroot.put("etc/ipoffice.restore-new/ipoffice/partial", "half\n")
    shutil.copytree(lroot.p("var/lib/ipoffice"), lroot.p("var/lib/ipoffice.restore-old"))
    r = lroot.run("restore", archive)
    assert r.status == 0, r
    assert lroot.snapshot() == before


def test_restore_cancelled(lroot):
    """SIGTERM (a cancel) while the hook runs: it exits 143 and leaves no
    temporary files; the configuration is the old or the restored one,
    whole. (Where the signal lands varies; every outcome is checked.)"""
    make_linux_config(lroot)
    for i in range(300):
        lroot.put("var/lib/ipoffice/voicemail/m%03d" % i, os.urandom(8192))
    restored = lroot.snapshot()
    archive = backup(lroot)
    lroot.put("etc/ipoffice/system.cfg", "name=changed\n")
    lroot.put("var/lib/ipoffice/voicemail/m000", "changed\n")
    before = lroot.snapshot()
    path = os.path.join(SCRIPTS, "linux", "restore")
    proc = subprocess.Popen([path, archive], env=lroot.env(), cwd="/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline().startswith(b"progress 10")
    os.killpg(proc.pid, 15)
    proc.communicate(timeout=30)
    assert proc.returncode in (0, 143)
    assert leftovers(lroot) == []
    assert lroot.snapshot() == (restored if proc.returncode == 0 else before)


# ------------------------------------------------------------------ transfer-check

def test_transfer_check_ok(root):
    staging = os.path.join(root.state, "staging", "j1")
    r = root.run("transfer-check", staging, str(1 << 20))
    assert r.status == 0, r
    assert r.progress == [(100, "done")]
    assert os.path.isdir(staging)
    assert stat.S_IMODE(os.stat(staging).st_mode) == 0o700
    # Again, on the existing directory; a leading zero is decimal, not octal.
    r = root.run("transfer-check", staging, "09")
    assert r.status == 0, r
    r = root.run("transfer-check", staging, "0")
    assert r.status == 0, r


def test_transfer_check_no_space(root):
    skip_if_room(root.path, TIB)
    staging = os.path.join(root.state, "staging")
    r = root.run("transfer-check", staging, str(TIB))
    assert r.status == 3, r
    m = re.fullmatch(r"not enough space in %s: need (\d+) KiB, have (\d+) KiB"
                     % re.escape(staging), r.reason)
    assert m, r.reason
    assert int(m.group(1)) == TIB // 1024 + 1024     # the 1 MiB margin
    # df's figure, give or take what others wrote meanwhile.
    assert abs(int(m.group(2)) - free_bytes(staging) // 1024) < 256 * 1024


@pytest.mark.parametrize("args", [
    [], ["/x"], ["/x", "1", "2"], ["relative/dir", "1"], ["/x", "-1"],
    ["/x", "1.5"], ["/x", "1e9"], ["/x", ""], ["/x", "1" * 19], ["/x", " 1"]])
def test_transfer_check_usage(root, args):
    args = [os.path.join(root.tmp, a[1:]) if a.startswith("/") else a for a in args]
    r = root.run("transfer-check", *args)
    assert r.status == 2, r
    for a in args[:1]:
        assert not os.path.exists(a)


# ------------------------------------------------------------------ upgrade

def sha256(data):
    return hashlib.sha256(data).hexdigest()


def stage(root, release, files, profile=None, corrupt=(), pretty=False):
    """Stages FILES ({name: bytes}) in STATE/staging with the manifest of
    RELEASE as the agent writes it; returns (staging dir, manifest path)."""
    staging = os.path.join(root.state, "staging")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging, mode=0o700)
    comps = []
    for name, data in files.items():
        with open(os.path.join(staging, name), "wb") as f:
            f.write(data)
        digest = sha256(data)
        if name in corrupt:
            digest = sha256(data + b"!")
        comps.append({"name": name, "version": release, "size": len(data),
                      "sha256": digest})
    manifest = {"release": release, "profile": profile or root.profile,
                "components": comps}
    path = os.path.join(root.out, "manifest-%s.json" % release)
    with open(path, "w") as f:
        if pretty:
            json.dump(manifest, f, indent=2)
        else:
            f.write(json.dumps(manifest, separators=(",", ":")))
    return staging, path


def release_files(release, profile):
    files = {"ipoffice-%s.bin" % release: os.urandom(200000) + release.encode(),
             "phones-%s.tar" % release: b"phone firmware " + release.encode()}
    if profile == "ip500v2":
        files["exp-unit-%s.bin" % release] = b"expansion unit " + release.encode()
    return files


def check_installed(root, release, files, previous):
    assert root.text("etc/ipoffice-version").splitlines()[0] == release
    assert os.readlink(root.p("opt/ipoffice/current")) == "releases/" + release
    assert root.text("opt/ipoffice/previous") == previous + "\n"
    assert open(os.path.join(root.state, "upgrade-pending")).read() == release + "\n"
    rel = root.p("opt/ipoffice/releases/" + release)
    assert sorted(os.listdir(rel)) == sorted(files)
    for name, data in files.items():
        assert root.read("opt/ipoffice/current/" + name) == data
    assert leftovers(root) == []


def test_upgrade_applies(root):
    root.put("etc/ipoffice-version", "11.1.3.0\nbuild 42\n")
    files = release_files("12.0.1.0", root.profile)
    staging, manifest = stage(root, "12.0.1.0", files)
    r = root.run("upgrade", staging, manifest)
    assert r.status == 0, r
    assert r.progress == UPGRADE_STEPS
    check_installed(root, "12.0.1.0", files, "11.1.3.0")
    assert root.text("etc/ipoffice-version") == "12.0.1.0\nbuild 42\n"
    # The staged files are the agent's: left as they were.
    assert sorted(os.listdir(staging)) == sorted(files)
    # A rerun (e.g. after an agent restart) gives the same result.
    before = root.snapshot()
    r = root.run("upgrade", staging, manifest)
    assert r.status == 0, r
    assert root.snapshot() == before


def test_upgrade_twice_keeps_previous(root):
    root.put("etc/ipoffice-version", "11.1.3.0\n")
    f1 = release_files("12.0.1.0", root.profile)
    assert root.run("upgrade", *stage(root, "12.0.1.0", f1)).status == 0
    f2 = release_files("12.0.2.0", root.profile)
    r = root.run("upgrade", *stage(root, "12.0.2.0", f2))
    assert r.status == 0, r
    check_installed(root, "12.0.2.0", f2, "12.0.1.0")
    # The previous release stays installed, for a rollback.
    for name, data in f1.items():
        assert root.read("opt/ipoffice/releases/12.0.1.0/" + name) == data
    # A third: the new one and the previous one are kept, older ones go.
    f3 = release_files("12.0.3.0", root.profile)
    r = root.run("upgrade", *stage(root, "12.0.3.0", f3))
    assert r.status == 0, r
    check_installed(root, "12.0.3.0", f3, "12.0.2.0")
    assert sorted(os.listdir(root.p("opt/ipoffice/releases"))) == ["12.0.2.0", "12.0.3.0"]


def test_upgrade_pretty_manifest(root):
    root.put("etc/ipoffice-version", "11.1.3.0\n")
    files = release_files("12.0.1.0", root.profile)
    r = root.run("upgrade", *stage(root, "12.0.1.0", files, pretty=True))
    assert r.status == 0, r
    check_installed(root, "12.0.1.0", files, "11.1.3.0")


@pytest.mark.parametrize("installed", [False, True])
def test_upgrade_sha_mismatch(root, installed):
    """A staged file that does not match the manifest's SHA-256: exit 1 and
    nothing changed, on a fresh system and on one upgraded before."""
    root.put("etc/ipoffice-version", "11.1.3.0\n")
    if installed:
        files = release_files("12.0.1.0", root.profile)
        assert root.run("upgrade", *stage(root, "12.0.1.0", files)).status == 0
    files = release_files("12.0.2.0", root.profile)
    bad = "phones-12.0.2.0.tar"
    staging, manifest = stage(root, "12.0.2.0", files, corrupt=[bad])
    before = root.snapshot()
    r = root.run("upgrade", staging, manifest)
    assert r.status == 1, r
    assert r.reason == "component %s does not match its SHA-256 in the manifest" % bad
    assert r.progress == UPGRADE_STEPS[:2]
    assert root.snapshot() == before


def test_upgrade_missing_component(root):
    root.put("etc/ipoffice-version", "11.1.3.0\n")
    files = release_files("12.0.1.0", root.profile)
    staging, manifest = stage(root, "12.0.1.0", files)
    gone = "phones-12.0.1.0.tar"
    os.unlink(os.path.join(staging, gone))
    before = root.snapshot()
    r = root.run("upgrade", staging, manifest)
    assert (r.status, r.reason) == (1, "component missing from %s: %s" % (staging, gone)), r
    assert root.snapshot() == before


def test_upgrade_size_mismatch(root):
    files = release_files("12.0.1.0", root.profile)
    staging, manifest = stage(root, "12.0.1.0", files)
    name = "ipoffice-12.0.1.0.bin"
    with open(os.path.join(staging, name), "ab") as f:
        f.write(b"more")
    before = root.snapshot()
    r = root.run("upgrade", staging, manifest)
    assert r.status == 1, r
    assert r.reason == "component %s has %d bytes, the manifest says %d" % (
        name, len(files[name]) + 4, len(files[name]))
    assert root.snapshot() == before


def manifest_text(root, staging, text):
    path = os.path.join(root.out, "bad.json")
    with open(path, "w") as f:
        f.write(text)
    return path


C = '{"name":"a.bin","version":"1","size":1,"sha256":"%s"}' % ("0" * 64)
BAD_MANIFESTS = {
    "not-json": ("garbage", "bad release in the manifest: ''"),
    "bad-release": ('{"release":"12.x","profile":"%s","components":[' + C + ']}',
                    "bad release in the manifest: '12.x'"),
    "other-profile": ('{"release":"12.0","profile":"other","components":[' + C + ']}',
                      "the manifest is for profile 'other', this system is %s"),
    "no-components": ('{"release":"12.0","profile":"%s","components":[]}',
                      "the manifest must list 1 to 16 components, it lists 0"),
    "too-many": ('{"release":"12.0","profile":"%s","components":['
                 + ",".join(C.replace("a.bin", "c%d" % i) for i in range(17)) + "]}",
                 "the manifest must list 1 to 16 components, it lists 17"),
    "twice": ('{"release":"12.0","profile":"%s","components":[' + C + "," + C + "]}",
              "component a.bin is twice in the manifest"),
    "path-name": ('{"release":"12.0","profile":"%s","components":['
                  + C.replace("a.bin", "../a.bin") + "]}",
                  "bad component name in the manifest: '../a.bin'"),
    "dot-name": ('{"release":"12.0","profile":"%s","components":['
                 + C.replace("a.bin", "..") + "]}",
                 "bad component name in the manifest: '..'"),
    "bad-sha": ('{"release":"12.0","profile":"%s","components":['
                + C.replace("0" * 64, "0" * 63 + "X") + "]}",
                "bad sha256 of component a.bin in the manifest: '%s'" % ("0" * 63 + "X")),
    "no-size": ('{"release":"12.0","profile":"%s","components":['
                + C.replace('"size":1,', "") + "]}",
                "bad size of component a.bin in the manifest: ''"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_upgrade_bad_manifest(root, case):
    text, reason = BAD_MANIFESTS[case]
    if "%s" in text:
        text = text % root.profile
    if "%s" in reason:
        reason = reason % root.profile
    staging = os.path.join(root.state, "staging")
    os.makedirs(staging)
    with open(os.path.join(staging, "a.bin"), "wb") as f:
        f.write(b"a")
    before = root.snapshot()
    r = root.run("upgrade", staging, manifest_text(root, staging, text))
    assert (r.status, r.reason) == (1, reason), r
    assert root.snapshot() == before


def test_upgrade_not_enough_space(root):
    """A staged (sparse) component of 1 TiB, as the manifest says: no room
    for the release, exit 3 before anything is copied."""
    skip_if_room(root.path, TIB)
    staging = os.path.join(root.out, "staging")     # not read by snapshot()
    os.makedirs(staging)
    with open(os.path.join(staging, "big.bin"), "wb") as f:
        f.truncate(TIB)
    text = ('{"release":"12.0.1.0","profile":"%s","components":[{"name":"big.bin",'
            '"version":"12.0.1.0","size":%d,"sha256":"%s"}]}'
            % (root.profile, TIB, "0" * 64))
    before = root.snapshot()
    r = root.run("upgrade", staging, manifest_text(root, staging, text))
    assert r.status == 3, r
    m = re.fullmatch(r"not enough space: need (\d+) KiB, have (\d+) KiB", r.reason)
    assert m and int(m.group(1)) == TIB // 1024 + 64, r.reason
    assert root.snapshot() == before


def test_upgrade_rollback_after_switch(root):
    """A failure after current was switched (here: upgrade-pending cannot be
    replaced, being immutable) puts current and the version file back."""
    root.put("etc/ipoffice-version", "11.1.3.0\n")
    f1 = release_files("12.0.1.0", root.profile)
    assert root.run("upgrade", *stage(root, "12.0.1.0", f1)).status == 0
    pending = os.path.join(root.state, "upgrade-pending")
    if subprocess.run(["chattr", "+i", pending], capture_output=True).returncode:
        pytest.skip("chattr +i does not work here (not root, or the file "
                    "system has no immutable flag)")
    try:
        f2 = release_files("12.0.2.0", root.profile)
        staging, manifest = stage(root, "12.0.2.0", f2)
        before = root.snapshot()
        r = root.run("upgrade", staging, manifest)
        assert r.status == 1, r
        assert r.reason == "cannot rename %s.tmp to %s" % (pending, pending)
        assert r.progress == UPGRADE_STEPS[:3]
        after = root.snapshot()
        # The new release stays installed (not current): a rerun reuses it.
        new = [k for k in after if k.startswith("opt/ipoffice/releases/12.0.2.0")]
        assert new
        for k in new:
            del after[k]
        assert after == before
    finally:
        subprocess.run(["chattr", "-i", pending])
    r = root.run("upgrade", staging, manifest)
    assert r.status == 0, r
    check_installed(root, "12.0.2.0", f2, "12.0.1.0")


def test_upgrade_current_not_a_link(root):
    os.makedirs(root.p("opt/ipoffice/current"))
    files = release_files("12.0.1.0", root.profile)
    staging, manifest = stage(root, "12.0.1.0", files)
    before = root.snapshot()
    r = root.run("upgrade", staging, manifest)
    assert r.status == 1, r
    assert r.reason == "%s is not a symbolic link" % root.p("opt/ipoffice/current")
    assert root.snapshot() == before


def test_upgrade_usage(root):
    staging, manifest = stage(root, "12.0.1.0", release_files("12.0.1.0", root.profile))
    before = root.snapshot()
    for args in ([], [staging], [staging, manifest, "x"], ["staging", manifest],
                 [staging, "manifest.json"]):
        r = root.run("upgrade", *args)
        assert r.status == 2, (args, r)
    env = root.env()
    del env["COMAGENT_STATE_DIR"]
    r = root.run("upgrade", staging, manifest, env=env)
    assert r.status == 2 and r.reason.startswith("COMAGENT_STATE_DIR"), r
    r = root.run("upgrade", staging + "-missing", manifest)
    assert (r.status, r.reason) == (1, "no staging directory %s-missing" % staging), r
    assert root.snapshot() == before


# ------------------------------------------------------------------ restart-phones, reboot

STAMP = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"


def check_stamp(text, job):
    m = re.fullmatch(STAMP + (" " + re.escape(job) if job else "") + "\n", text)
    assert m, text
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(t - time.time()) < 300


def test_restart_phones(root):
    r = root.run("restart-phones")
    assert r.status == 0, r
    assert r.progress == [(100, "done")]
    check_stamp(root.text("run/ipoffice/restart-phones"), JOB)
    # Again, for a local run (no job): the request is rewritten.
    env = root.env()
    env["COMAGENT_JOB"] = ""
    r = root.run("restart-phones", env=env)
    assert r.status == 0, r
    check_stamp(root.text("run/ipoffice/restart-phones"), "")
    assert leftovers(root) == []
    r = root.run("restart-phones", "now")
    assert (r.status, r.reason) == (2, "usage: restart-phones"), r


def test_reboot_sandbox(root):
    """With a root other than /, reboot only writes the request file (and
    Root.run checks that no spy was called)."""
    r = root.run("reboot")
    assert r.status == 0, r
    assert r.progress == [(100, "reboot requested")]
    check_stamp(root.text("run/reboot-requested"), JOB)
    assert leftovers(root) == []
    # Again, with a trailing slash on the root and no job.
    env = root.env()
    env["COMAGENT_ROOT"] = root.path + "/"
    env["COMAGENT_JOB"] = ""
    os.unlink(root.p("run/reboot-requested"))
    r = root.run("reboot", env=env)
    assert r.status == 0, r
    check_stamp(root.text("run/reboot-requested"), "")


def test_reboot_bad_environment(root):
    """No root, or a relative one, is exit 2: never a reboot."""
    env = root.env()
    del env["COMAGENT_ROOT"]
    r = root.run("reboot", env=env)
    assert (r.status, r.reason) == (2, "COMAGENT_ROOT is not set"), r
    env["COMAGENT_ROOT"] = ""
    r = root.run("reboot", env=env)
    assert (r.status, r.reason) == (2, "COMAGENT_ROOT is not set"), r
    env["COMAGENT_ROOT"] = os.path.relpath(root.path, "/")
    r = root.run("reboot", env=env)
    assert r.status == 2 and "not an absolute path" in r.reason, r
    r = root.run("reboot", "now")
    assert (r.status, r.reason) == (2, "usage: reboot"), r
    assert not os.path.exists(root.p("run/reboot-requested"))


def test_reboot_spies_work(root):
    """The guard of Root.run is real: a spy called is noticed."""
    subprocess.run([os.path.join(root.spies, "reboot")], check=True)
    with pytest.raises(AssertionError, match="tried to restart"):
        root.run("reboot")


@pytest.mark.parametrize("vmpro", ["none", "config", "full"])
def test_linux_backup_vmpro(lroot, vmpro):
    """COM's vmpro option: no voicemail, Voicemail Pro's files but its
    messages, or everything; restoring a "config" backup keeps the messages
    recorded since."""
    make_linux_config(lroot)
    lroot.put("opt/vmpro/callflow.db", "flows v1\n")
    lroot.put("opt/vmpro/greetings/g1.wav", b"RIFF1")
    lroot.put("opt/vmpro/messages/m1.wav", b"RIFFm1")
    env = dict(lroot.env(), COMAGENT_VMPRO=vmpro)
    out = os.path.join(lroot.out, "vm.tar.gz")
    r = lroot.run("backup", out, env=env)
    assert r.status == 0, r
    with tarfile.open(out) as t:
        names = t.getnames()
    vm = sorted(n for n in names if n.startswith("opt/vmpro"))
    want = {"none": [],
            "config": ["opt/vmpro/callflow.db", "opt/vmpro/greetings",
                       "opt/vmpro/greetings/g1.wav"],
            "full": ["opt/vmpro/callflow.db", "opt/vmpro/greetings",
                     "opt/vmpro/greetings/g1.wav", "opt/vmpro/messages",
                     "opt/vmpro/messages/m1.wav"]}[vmpro]
    assert vm == want
    lroot.put("opt/vmpro/callflow.db", "flows v2\n")
    lroot.put("opt/vmpro/messages/m2.wav", b"RIFFm2")
    r = lroot.run("restore", out)
    assert r.status == 0, r
    assert lroot.text("opt/vmpro/callflow.db") == ("flows v2\n" if vmpro == "none"
                                                   else "flows v1\n")
    # messages: kept unless the backup held them (then as they were)
    assert os.path.exists(lroot.p("opt/vmpro/messages/m2.wav")) == (vmpro != "full")
    assert lroot.read("opt/vmpro/messages/m1.wav") == b"RIFFm1"


def test_linux_backup_bad_vmpro(lroot):
    make_linux_config(lroot)
    r = lroot.run("backup", os.path.join(lroot.out, "x.tar.gz"),
                  env=dict(lroot.env(), COMAGENT_VMPRO="some"))
    assert r.status == 2 and "COMAGENT_VMPRO" in r.reason, r


def test_linux_backup_leaves_out_special_files(lroot):
    """A symbolic link or a fifo in the backed-up directories is left out
    and named on stderr, so the backup can be restored."""
    make_linux_config(lroot)
    os.symlink("/etc/passwd", lroot.p("etc/ipoffice/link"))
    os.mkfifo(lroot.p("var/lib/ipoffice/pipe"))
    out = os.path.join(lroot.out, "s.tar.gz")
    r = lroot.run("backup", out)
    assert r.status == 0, r
    assert "left out (not a file or directory)" in r.err and "etc/ipoffice/link" in r.err
    with tarfile.open(out) as t:
        names = t.getnames()
        assert all(m.isfile() or m.isdir() for m in t.getmembers())
    assert "etc/ipoffice/link" not in names and "var/lib/ipoffice/pipe" not in names
    assert "etc/ipoffice/system.cfg" in names
    os.unlink(lroot.p("etc/ipoffice/link"))
    os.unlink(lroot.p("var/lib/ipoffice/pipe"))
    lroot.put("etc/ipoffice/system.cfg", "name=changed\n")
    r = lroot.run("restore", out)
    assert r.status == 0, r
    assert lroot.text("etc/ipoffice/system.cfg") != "name=changed\n"
    # the same files again: the same bytes
    out2 = os.path.join(lroot.out, "s2.tar.gz")
    os.symlink("/etc/passwd", lroot.p("etc/ipoffice/link"))
    assert lroot.run("backup", out2).status == 0
    os.unlink(lroot.p("etc/ipoffice/link"))
    r = lroot.run("backup", os.path.join(lroot.out, "s3.tar.gz"))
    with open(out2, "rb") as a, open(os.path.join(lroot.out, "s3.tar.gz"), "rb") as b:
        assert a.read() == b.read()
