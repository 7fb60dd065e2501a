"""The Debian package (`make deb`, packaging/deb/) and the man page it
carries: what the .deb holds, lintian, that it is reproducible, that
comagent(8) names every command and key the agent has, and a real
`dpkg -i` on this machine — the system user, owners and modes, enabled
units that `systemd-analyze verify` passes, the installed binary and man
page working — then `dpkg --purge` leaving nothing behind.

The install tests need root (they skip, saying so, without it) and a
machine where comagent is not installed already. Whatever happens, the
module's finalizer purges the package and deletes the comagent user and
group if this test created them."""

import glob
import grp
import gzip
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST_BIN = os.path.join(REPO, "build", "host", "comagent")
MAN_SRC = os.path.join(REPO, "build", "man", "comagent.8")
PKG = "comagent"
UNITS = ("comagent.service", "comagent-hooks.socket", "comagent-hooks@.service")
ENABLED = ("/etc/systemd/system/multi-user.target.wants/comagent.service",
           "/etc/systemd/system/sockets.target.wants/comagent-hooks.socket")
HOOKS = ("backup", "restore", "transfer-check", "upgrade", "restart-phones",
         "reboot")
STATE_DIRS = {"/var/lib/comagent": 0o700, "/var/log/comagent": 0o750}


def sh(*args, timeout=120, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if check:
        assert r.returncode == 0, "%s: rc %d\n%s%s" % (
            " ".join(args), r.returncode, r.stdout, r.stderr)
    return r


def make_env():
    """The environment for a nested make: without the outer make's
    jobserver and flags (check-integration runs this suite from make)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def deb_version():
    return sh("dpkg-parsechangelog", "-l",
              os.path.join(REPO, "packaging", "deb", "changelog"),
              "-S", "Version").stdout.strip()


def dpkg(*args):
    """dpkg, waiting out another dpkg/apt holding the lock (deps.sh)."""
    deadline = time.monotonic() + 120
    while True:
        r = sh("dpkg", *args, check=False, timeout=300)
        if r.returncode == 0 or "lock" not in r.stderr or \
                time.monotonic() > deadline:
            return r
        time.sleep(2)


def owning_package(path):
    """dpkg -S for a library path as ldconfig names it: with usrmerge dpkg
    may know it under /usr/lib, /lib or as the file a link points to."""
    cands = []
    for p in (path, os.path.realpath(path)):
        cands += [p, p[4:] if p.startswith("/usr/") else "/usr" + p]
    for p in cands:
        r = sh("dpkg", "-S", p, check=False)
        if r.returncode == 0:
            return r.stdout.split(":")[0]
    raise AssertionError("no package owns %s" % path)


def installed():
    r = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG, check=False)
    return r.returncode == 0 and r.stdout.startswith("ii")


def known_to_dpkg():
    return sh("dpkg-query", "-W", PKG, check=False).returncode == 0


@pytest.fixture(scope="module")
def deb():
    """make deb (nothing to do when check-integration built it already
    from the same binary): the .deb's path."""
    r = sh("make", "-C", REPO, "--no-print-directory", "deb", timeout=900,
           env=make_env(), check=False)
    assert r.returncode == 0, "make deb failed:\n%s%s" % (r.stdout, r.stderr)
    arch = sh("dpkg", "--print-architecture").stdout.strip()
    path = os.path.join(REPO, "build", "deb",
                        "comagent_%s_%s.deb" % (deb_version(), arch))
    assert os.path.isfile(path), path
    return path


def contents(deb):
    """{path: (mode string, owner/group)} of the data archive."""
    out = {}
    for ln in sh("dpkg-deb", "-c", deb).stdout.splitlines():
        f = ln.split()
        path = f[5][1:].rstrip("/") or "/"
        out[path] = (f[0], f[1])
    return out


# ------------------------------------------------------------- the .deb file

def test_control_fields_and_honest_depends(deb):
    info = sh("dpkg-deb", "-f", deb).stdout
    fields = dict(re.findall(r"^([\w-]+): (.*)$", info, re.M))
    assert fields["Package"] == PKG
    assert fields["Version"] == deb_version()
    assert fields["Architecture"] == sh("dpkg", "--print-architecture").stdout.strip()
    assert fields["Section"] == "admin" and fields["Priority"] == "optional"
    assert fields["Maintainer"] and int(fields["Installed-Size"]) > 0
    assert "\n " in info.split("Description:", 1)[1], "no long description"
    deps = {d.split()[0] for d in fields["Depends"].split(", ")}
    # Every shared library the binary needs comes from a package it
    # depends on; libwebsockets is linked in statically.
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                        sh("readelf", "-d", HOST_BIN).stdout)
    assert needed and not [n for n in needed if "websockets" in n], needed
    for soname in needed:
        m = re.search(r"%s \(.*\) => (\S+)" % re.escape(soname),
                      sh("ldconfig", "-p").stdout)
        assert m, soname
        pkg = owning_package(m.group(1))
        assert pkg in deps, "%s (%s) missing from Depends: %s" % (
            soname, pkg, fields["Depends"])
    assert "adduser" in deps   # postinst uses it


def test_data_and_control_members(deb):
    files = contents(deb)
    for path, mode in [
            ("/usr/bin/comagent", "-rwxr-xr-x"),
            ("/etc/comagent/comagent.ini.example", "-rw-------"),
            ("/usr/share/man/man8/comagent.8.gz", "-rw-r--r--"),
            ("/usr/share/doc/comagent/copyright", "-rw-r--r--"),
            ("/usr/share/doc/comagent/changelog.Debian.gz", "-rw-r--r--"),
            ("/usr/share/doc/comagent/README.md.gz", "-rw-r--r--"),
            ("/usr/share/doc/comagent/HOOKS.md.gz", "-rw-r--r--"),
            ("/usr/libexec/comagent/lib/hooklib.sh", "-rw-r--r--")] + [
            ("/lib/systemd/system/" + u, "-rw-r--r--") for u in UNITS] + [
            ("/usr/libexec/comagent/linux/" + h, "-rwxr-xr-x") for h in HOOKS]:
        assert path in files, "%s not in the package" % path
        assert files[path][0] == mode, (path, files[path])
    assert {o for _, o in files.values()} == {"root/root"}
    # Nothing a package must not ship.
    assert not [p for p in files if p.startswith(("/var/", "/run/", "/tmp/"))
                or p == "/etc/comagent/comagent.ini"]
    work = tempfile.mkdtemp(prefix="cag-deb-", dir="/tmp")
    try:
        sh("dpkg-deb", "-e", deb, work)
        assert sorted(os.listdir(work)) == ["conffiles", "control", "md5sums",
                                            "postinst", "postrm", "prerm"]
        with open(os.path.join(work, "conffiles")) as f:
            assert f.read().split() == ["/etc/comagent/comagent.ini.example"]
        with open(os.path.join(work, "md5sums")) as f:
            sums = {ln.split()[1] for ln in f}
        assert "usr/bin/comagent" in sums and \
            "usr/share/man/man8/comagent.8.gz" in sums
        for s in ("postinst", "prerm", "postrm"):
            p = os.path.join(work, s)
            assert os.stat(p).st_mode & 0o777 == 0o755
            sh("sh", "-n", p)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_lintian_has_no_errors(deb):
    if not shutil.which("lintian"):
        pytest.fail("lintian missing (scripts/deps.sh installs it)")
    r = sh("lintian", "-I", "-E", "--pedantic", deb, check=False, timeout=300)
    print(r.stdout)
    tags = [ln for ln in r.stdout.splitlines() if re.match(r"^[EWIPX]: ", ln)]
    assert not [t for t in tags if t.startswith("E:")], r.stdout
    # Every tag lintian still reports is overridden with a reason
    # (packaging/deb/lintian-overrides); a new one shows up here.
    assert not [t for t in tags if t.startswith("W:")], r.stdout


def test_same_binary_gives_the_same_package(deb, tmp_path):
    """Reproducible: the Makefile's own rule, run twice on the same binary
    and page (-o: not rebuilt, even if a source changed meanwhile), gives
    the same bytes."""
    builds = []
    for n in (1, 2):
        out = str(tmp_path / str(n) / os.path.basename(deb))
        sh("make", "-C", REPO, "--no-print-directory", "-o",
           "build/host/comagent", "-o", "build/man/comagent.8",
           "DEB=" + out, out, timeout=300, env=make_env())
        with open(out, "rb") as f:
            builds.append(f.read())
    assert builds[0] == builds[1], "two builds of %s differ" % deb


# ------------------------------------------------------------- the man page

def man_text(path):
    """The page rendered, plain text; warnings fail."""
    r = sh("man", "--warnings", "-l", path, env=dict(os.environ, MANWIDTH="120",
                                                    MAN_KEEP_FORMATTING="0"))
    assert not r.stderr.strip(), r.stderr
    return re.sub(r".\x08", "", r.stdout)


def roff_plain(s):
    """A roff line's text without font escapes."""
    s = re.sub(r"\\f[BIRP]", "", s)
    return s.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ") \
            .replace("\\&", "")


def test_man_page_renders_cleanly(deb):
    r = sh("groff", "-man", "-Tutf8", "-ww", "-z", MAN_SRC)
    assert not r.stderr.strip(), r.stderr
    text = man_text(MAN_SRC)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS",
                    "CONFIGURATION", "FILES", "EXIT STATUS", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), section
    lex = sh("lexgrog", MAN_SRC, check=False).stdout
    assert "comagent - " in lex, lex


def test_man_page_names_every_command_and_key(deb):
    """The generator's guard: every command of `comagent --help` is a
    COMMANDS subsection, every key of `comagent config-keys` an entry of
    its section in CONFIGURATION."""
    with open(MAN_SRC) as f:
        src = f.read().splitlines()
    subsections, entries, sec = [], {}, None
    for i, ln in enumerate(src):
        if ln.startswith(".SH "):
            sec = None
        if ln.startswith(".SS "):
            sec = roff_plain(ln[4:]).strip()
            subsections.append(sec)
            entries[sec] = []
        elif ln == ".TP" and sec is not None and i + 1 < len(src):
            entries[sec].append(roff_plain(src[i + 1]).strip())
    helptext = sh(HOST_BIN, "--help").stdout
    block = helptext.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    commands = re.findall(r"^  ([a-z][\w-]*)", block, re.M)
    assert len(commands) >= 10 and "config-keys" in commands, commands
    titles = {t.split()[0] for t in subsections}
    assert not [c for c in commands if c not in titles], \
        ("commands missing from comagent(8)", set(commands) - titles)
    keys, section = [], None
    for ln in sh(HOST_BIN, "config-keys").stdout.splitlines():
        m = re.match(r"^\[(.+)\]$", ln)
        if m:
            section = m.group(1)
        m = re.match(r"^  (\S+)$", ln)
        if m:
            keys.append((section, m.group(1)))
    assert len(keys) > 50, keys
    missing = []
    for section, key in keys:
        tags = entries.get("[%s]" % section, [])
        if not any(t == key or t.startswith(key + " ") for t in tags):
            missing.append((section, key))
    assert not missing, "keys missing from comagent(8): %s" % missing


# ------------------------------------------------------ installed for real

@pytest.fixture(scope="module")
def install(deb):
    """dpkg -i the package; the finalizer purges it whatever happened, and
    deletes the comagent user and group if they were made here."""
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root (this runs as uid %d)"
                    % os.geteuid())
    if known_to_dpkg():
        pytest.skip("a comagent package is already on this machine: not "
                    "touching it")
    had_user = _exists(pwd.getpwnam, PKG)
    had_group = _exists(grp.getgrnam, PKG)
    try:
        r = dpkg("-i", deb)
        assert r.returncode == 0, r.stdout + r.stderr
        yield deb
    finally:
        if known_to_dpkg():
            dpkg("--purge", PKG)
        if os.path.exists("/etc/comagent/comagent.ini"):
            os.unlink("/etc/comagent/comagent.ini")
        if not had_user and _exists(pwd.getpwnam, PKG):
            sh("userdel", PKG, check=False)
        if not had_group and _exists(grp.getgrnam, PKG):
            sh("groupdel", PKG, check=False)


def _exists(lookup, name):
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def owner_mode(path):
    st = os.lstat(path)
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


def test_install_makes_user_dirs_and_enables_units(install):
    assert installed()
    u = pwd.getpwnam(PKG)
    g = grp.getgrnam(PKG)
    assert u.pw_gid == g.gr_gid
    assert u.pw_uid < 1000, "not a system user: uid %d" % u.pw_uid
    assert u.pw_dir == "/var/lib/comagent"
    assert u.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    for d, mode in STATE_DIRS.items():
        assert owner_mode(d) == (PKG, PKG, mode), d
    assert owner_mode("/usr/bin/comagent") == ("root", "root", 0o755)
    assert owner_mode("/etc/comagent/comagent.ini.example") == \
        ("root", "root", 0o600)
    for u_ in UNITS:
        assert owner_mode("/lib/systemd/system/" + u_) == ("root", "root", 0o644)
    for h in HOOKS:
        assert owner_mode("/usr/libexec/comagent/linux/" + h) == \
            ("root", "root", 0o755)
    # The admin's configuration is theirs to write: not made from the
    # example.
    assert not os.path.exists("/etc/comagent/comagent.ini")
    # Enabled the Debian way (deb-systemd-helper), without a running
    # systemd to start them.
    for link in ENABLED:
        assert os.path.islink(link), link
        assert os.readlink(link).startswith("/lib/systemd/system/")


def test_installed_units_verify(install):
    r = sh("systemd-analyze", "verify", *UNITS, check=False,
           cwd="/lib/systemd/system")
    # The man: link of Documentation= is checked too: the page is there.
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    with open("/lib/systemd/system/comagent.service") as f:
        unit = f.read()
    assert "ExecStart=/usr/bin/comagent run" in unit
    assert "Documentation=man:comagent(8)" in unit


def test_installed_binary_and_configuration(install):
    r = sh("/usr/bin/comagent", "--help")
    assert "config-keys" in r.stdout
    version = sh("/usr/bin/comagent", "version").stdout.split()[-1]
    assert deb_version().startswith(version + "-")
    # As README says: the example copied into place, root's with group
    # comagent, 0640 — the agent's own user must read it too.
    sh("install", "-m", "0640", "-g", PKG, "/etc/comagent/comagent.ini.example",
       "/etc/comagent/comagent.ini")
    r = sh("/usr/bin/comagent", "check-config")
    assert "/etc/comagent/comagent.ini: configuration OK" in r.stdout
    r = sh("setpriv", "--reuid=" + PKG, "--regid=" + PKG, "--init-groups",
           "/usr/bin/comagent", "check-config")
    assert "configuration OK" in r.stdout


def test_installed_man_page(install):
    text = man_text("/usr/share/man/man8/comagent.8.gz")
    assert "COMAGENT(8)" in text and "config-keys" in text
    # The packaged page is the generated one; man finds it by name.
    with gzip.open("/usr/share/man/man8/comagent.8.gz", "rt") as f, \
            open(MAN_SRC) as g:
        assert f.read() == g.read()
    r = sh("man", "-w", "8", "comagent")
    assert r.stdout.strip() == "/usr/share/man/man8/comagent.8.gz"


def test_purge_leaves_nothing(install):
    """Last: dpkg --purge removes every file, the state, logs and the
    admin's configuration, the units' enablement and dpkg's own record.
    The user and group stay, as postrm says why."""
    files = [p for p in sh("dpkg", "-L", PKG).stdout.splitlines() if p]
    if not os.path.exists("/etc/comagent/comagent.ini"):
        sh("install", "-m", "0640", "-g", PKG,
           "/etc/comagent/comagent.ini.example", "/etc/comagent/comagent.ini")
    # Something the agent would have written.
    with open("/var/lib/comagent/settings", "w") as f:
        f.write("remoteaccess=0\n")
    with open("/var/log/comagent/comagent.log", "w") as f:
        f.write("x\n")
    r = dpkg("--purge", PKG)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "not empty" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert not known_to_dpkg()
    assert not glob.glob("/var/lib/dpkg/info/%s.*" % PKG)
    # Shared directories (/usr/bin, /lib/systemd/system ...) stay.
    left = [p for p in files if os.path.lexists(p) and not os.path.isdir(p)]
    assert not left, "left behind: %s" % left
    for p in ("/etc/comagent", "/usr/libexec/comagent",
              "/usr/share/doc/comagent", *STATE_DIRS, *ENABLED,
              "/etc/systemd/system/comagent.service"):
        assert not os.path.lexists(p), "%s left behind" % p
    dsh = sh("find", "/var/lib/systemd", "-name", "*comagent*",
             check=False).stdout.split()
    assert not dsh, "deb-systemd-helper state left: %s" % dsh
    assert _exists(pwd.getpwnam, PKG) and _exists(grp.getgrnam, PKG)
