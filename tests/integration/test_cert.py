"""Automatic certificate management (PROTOCOL.md 2.6, op `certificate`;
the `centralcert` setting): COM pushes the system's certificate, key and
intermediates with comsim's POST /job; the agent checks them (key, chain
to [cert] ca_file, [cert] name, dates by its own clock), has the
`certificate` hook install them (scripts/HOOKS.md) and records them in
STATE_DIR/cert (current + previous, one level of rollback). Refused pushes
leave the installed certificate, the record and the hook alone. The hook
itself is also run directly, as test_hooks.py runs the others.

Test certificates are made here with python3-cryptography: EC P-256 (and
one RSA), DNS SANs only (mbedTLS 2.28 ignores IP SANs)."""
import calendar
import datetime
import json
import os
import re
import shutil
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import COMAGENT_BIN, ctl, wait_until, write_ini
from test_hooks import Root
from test_jobs import C, S, job, put, settings, states, wait_final
from test_privsep import NOBODY, make_hooks, proc_uid, runner  # noqa: F401

NAME = "pbx-hq.example"
CERTS = "opt/ipoffice/certs"            # the linux hook's CERT_DIR
RELOAD = "run/ipoffice/reload-certificate"
STORE = "var/lib/comagent/cert"
DAY = datetime.timedelta(days=1)


# ------------------------------------------------------------------ PKI

def now_utc():
    return datetime.datetime.utcnow().replace(microsecond=0)


def pem(obj):
    """A certificate or private key (PKCS#8, unencrypted) as PEM text."""
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def cert(cn, key, issuer=None, issuer_key=None, ca=False, dns=(), serial=None,
         not_before=None, not_after=None):
    """A certificate for key, signed by issuer (self-signed without)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer.subject if issuer else subject)
         .public_key(key.public_key())
         .serial_number(serial or x509.random_serial_number())
         .not_valid_before(not_before or now_utc() - DAY)
         .not_valid_after(not_after or now_utc() + 365 * DAY)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                        critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(d) for d in dns]), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


class PKI:
    """A root CA (the agent's [cert] ca_file), an issuing intermediate, and
    leaves: good ones and each kind of bad one."""

    def __init__(self, d):
        self.root_key = ec_key()
        self.root = cert("Test System Root CA", self.root_key, ca=True,
                         not_after=now_utc() + 3650 * DAY)
        self.int_key = ec_key()
        self.inter = cert("Test Issuing CA", self.int_key, self.root,
                          self.root_key, ca=True)
        self.ca_file = os.path.join(d, "system-ca.pem")
        with open(self.ca_file, "w") as f:
            f.write(pem(self.root))
        other_key = ec_key()
        self.other_ca = cert("Some Other CA", other_key, ca=True)
        self.other_key = other_key

    def leaf(self, dns=(NAME,), key=None, serial=None, issuer=None,
             issuer_key=None, **kw):
        """(certificate, key): a leaf of the intermediate by default."""
        key = key or ec_key()
        c = cert(dns[0] if dns else "no-dns", key, issuer or self.inter,
                 issuer_key or self.int_key, dns=dns, serial=serial, **kw)
        return c, key

    def args(self, c, key, chain=None):
        return {"cert": pem(c), "key": pem(key),
                "chain": [pem(x) for x in (chain if chain is not None
                                           else [self.inter])]}


@pytest.fixture(scope="module")
def cpki(tmp_path_factory):
    return PKI(str(tmp_path_factory.mktemp("cpki")))


def unix(dt):
    return calendar.timegm(dt.utctimetuple())


def der_list(text):
    """The DER of each certificate in a PEM text, in order."""
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?",
                        text, re.S)
    return [x509.load_pem_x509_certificate(b.encode()).public_bytes(
        serialization.Encoding.DER) for b in blocks]


def der(c):
    return c.public_bytes(serialization.Encoding.DER)


# ------------------------------------------------------------------ helpers

def cert_agent(agent, sim, cpki, central=True, cert_conf=None, profile="linux",
               **kw):
    o = {"system": {"profile": profile},
         "cert": cert_conf if cert_conf is not None
         else {"ca_file": cpki.ca_file, "name": NAME}}
    a = agent(sim, o, start=False, **kw)
    settings(a, centralcert=central)
    put(a.root, "etc/ipoffice-version", "11.1.3.0\n")
    a.start()
    a.wait_connected()
    return a


def push(sim, args, jid=None, timeout=30, since=0):
    body = {"args": args}
    if jid:
        body["job"] = jid
    j = job(sim, "certificate", **body)
    return j, wait_final(sim, j, timeout, since)


def snapshot(root, rels=(CERTS, RELOAD, STORE)):
    """What the hook and the record hold: paths, link targets, contents."""
    out = {}
    for rel in rels:
        top = os.path.join(root, rel)
        if os.path.isfile(top) or os.path.islink(top):
            paths = [top]
        else:
            paths = [os.path.join(dp, n) for dp, dns, fns in os.walk(top)
                     for n in dns + fns]
        for p in paths:
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[p] = ("l", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[p] = ("f", f.read(), st.st_mtime_ns)
            else:
                out[p] = ("d",)
    return out


def installed(a, profile_dir=CERTS):
    """(cert.pem text, key.pem text, set name) the hook made current."""
    d = os.path.join(a.root, profile_dir)
    target = os.readlink(os.path.join(d, "current"))
    with open(os.path.join(d, target, "cert.pem")) as f:
        c = f.read()
    with open(os.path.join(d, target, "key.pem")) as f:
        k = f.read()
    return c, k, target


def record(a, which="current"):
    p = os.path.join(a.root, STORE, which + ".pem")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return f.read()


def no_work_files(a):
    work = os.path.join(a.root, "var/lib/comagent/work")
    left = [n for n in os.listdir(work) if n.startswith("certificate")] \
        if os.path.isdir(work) else []
    assert not left, left


# ------------------------------------------------------------------ install

def test_install_then_renewal_keeps_previous(comsim, agent, cpki):
    sim = comsim()
    a = cert_agent(agent, sim, cpki)
    assert a.status()["certificate"] is None
    c1, k1 = cpki.leaf(serial=0x1001)
    jid, m = push(sim, cpki.args(c1, k1))
    assert m["state"] == "succeeded", m
    assert m["message"].startswith("installed the certificate for %s, serial "
                                   "10:01, valid until " % NAME), m
    seen = [x["state"] for x in states(sim, jid)]
    assert seen[0] == "accepted" and "running" in seen, seen
    # The hook ran with the agent's files: the chain, leaf first, and the
    # key as sent; the services were asked to reload.
    chain, key, set1 = installed(a)
    assert der_list(chain) == [der(c1), der(cpki.inter)]
    assert key == pem(k1)
    assert stat.S_IMODE(os.stat(os.path.join(a.root, CERTS, set1,
                                             "key.pem")).st_mode) == 0o600
    with open(os.path.join(a.root, RELOAD)) as f:
        assert jid in f.read()
    no_work_files(a)
    # The status shows it (from the agent's record).
    st = a.status()["certificate"]
    assert st["subject"] == "CN=" + NAME, st
    assert st["issuer"] == "CN=Test Issuing CA", st
    assert st["serial"] == "10:01", st
    assert st["not_after"] == unix(c1.not_valid_after), st
    assert st["not_before"] == unix(c1.not_valid_before), st
    text = a.cli("status").stdout
    assert re.search(r"Certificate: +CN=%s, valid until \d{4}-\d\d-\d\d" % NAME,
                     text), text
    assert "serial 10:01, issued by CN=Test Issuing CA" in text
    # The record: current only, private.
    store = os.path.join(a.root, STORE)
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o700
    cur = os.path.join(store, "current.pem")
    assert stat.S_IMODE(os.stat(cur).st_mode) == 0o600
    assert der_list(record(a)) == [der(c1), der(cpki.inter)]
    assert pem(k1) in record(a)
    assert record(a, "previous") is None

    # A renewal (RSA this time, PKCS#1 key, no intermediate needed as it
    # comes from the root itself): installed, the first kept as previous.
    rk = rsa.generate_private_key(65537, 2048)
    c2, _ = cpki.leaf(key=rk, serial=0x1002, issuer=cpki.root,
                      issuer_key=cpki.root_key)
    rsa_pem = rk.private_bytes(serialization.Encoding.PEM,
                               serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption()).decode()
    assert "BEGIN RSA PRIVATE KEY" in rsa_pem
    jid2, m = push(sim, {"cert": pem(c2), "key": rsa_pem})
    assert m["state"] == "succeeded", m
    chain, key, set2 = installed(a)
    assert der_list(chain) == [der(c2)] and key == rsa_pem and set2 != set1
    assert os.path.isdir(os.path.join(a.root, CERTS, set1))   # one before
    assert der_list(record(a)) == [der(c2)]
    assert der_list(record(a, "previous")) == [der(c1), der(cpki.inter)]
    assert a.status()["certificate"]["serial"] == "10:02"
    # The record survives a restart of the agent.
    a.stop()
    a.proc = None
    a.rc = None
    a.start()
    a.wait_connected()
    assert a.status()["certificate"]["serial"] == "10:02"
    assert "installed certificate: CN=%s, serial 10:02" % NAME in a.log()


# ------------------------------------------------------------------ refusals

def refusals(cpki):
    """(what, args, reason, message part) for each push that must fail."""
    good, gkey = cpki.leaf()
    other_key = ec_key()
    wrong, wkey = cpki.leaf(dns=("pbx-x.example",))
    exp_at = now_utc() - 10 * DAY
    expired, ekey = cpki.leaf(not_before=exp_at - 30 * DAY, not_after=exp_at)
    fut_at = now_utc() + 10 * DAY
    future, fkey = cpki.leaf(not_before=fut_at, not_after=fut_at + 30 * DAY)
    selfk = ec_key()
    selfsigned = cert(NAME, selfk, dns=(NAME,))
    foreign, forkey = cpki.leaf(issuer=cpki.other_ca, issuer_key=cpki.other_key)
    enc = gkey.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"pw")).decode()
    broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"
    a = cpki.args
    return [
        ("mismatched key", a(good, other_key), "key_mismatch",
         "the key does not match the certificate"),
        ("wrong name", a(wrong, wkey), "name",
         "the certificate names pbx-x.example, not %s" % NAME),
        ("expired", a(expired, ekey), "expired",
         "the certificate expired on %s" % exp_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("not yet valid", a(future, fkey), "not_yet_valid",
         "the certificate is not valid before %s" % fut_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("self-signed", a(selfsigned, selfk, []), "untrusted",
         "the chain does not lead to the configured CA: The certificate is "
         "not correctly signed by the trusted CA"),
        ("other CA", a(foreign, forkey, []), "untrusted",
         "the chain does not lead to the configured CA"),
        ("intermediate missing", a(good, gkey, []), "untrusted",
         "the chain does not lead to the configured CA"),
        ("garbage cert", dict(a(good, gkey), cert="hello"), "invalid",
         "args.cert: not a PEM certificate"),
        ("broken base64", dict(a(good, gkey), cert=broken), "invalid",
         "args.cert: not a valid certificate: "),
        ("two certs as the leaf", dict(a(good, gkey), cert=pem(good) + pem(cpki.inter)),
         "invalid", "args.cert: one PEM certificate expected, found 2"),
        ("garbage key", dict(a(good, gkey), key="-----BEGIN PRIVATE KEY-----\n"
                             "AAAA\n-----END PRIVATE KEY-----\n"), "invalid",
         "args.key: not a valid private key: "),
        ("a certificate as the key", dict(a(good, gkey), key=pem(good)), "invalid",
         "args.key: not a PEM private key"),
        ("encrypted key", dict(a(good, gkey), key=enc), "invalid",
         "args.key: the key is encrypted"),
        ("no key", {"cert": pem(good)}, "invalid",
         "args.key: a PEM private key is required"),
        ("no cert", {"key": pem(gkey)}, "invalid",
         "args.cert: a PEM certificate is required"),
        ("too many chain entries", a(good, gkey, [cpki.inter] * 5), "invalid",
         "args.chain: at most 4 intermediate certificates, got 5"),
        ("chain not an array", dict(a(good, gkey), chain=pem(cpki.inter)), "invalid",
         "args.chain: must be an array"),
        ("garbage in the chain", dict(a(good, gkey), chain=[pem(cpki.inter), "x"]),
         "invalid", "args.chain[1]: not a PEM certificate"),
        ("rollback with a cert", dict(a(good, gkey), rollback=True), "invalid",
         "cert, key and chain must not be given"),
        ("rollback not a bool", {"rollback": "yes"}, "invalid",
         "args.rollback: must be true or false"),
    ]


def test_refused_pushes_keep_the_installed_certificate(comsim, agent, cpki):
    sim = comsim()
    a = cert_agent(agent, sim, cpki)
    c1, k1 = cpki.leaf(serial=0x2001)
    assert push(sim, cpki.args(c1, k1))[1]["state"] == "succeeded"
    before = snapshot(a.root)
    problems = []
    for what, args, reason, part in refusals(cpki):
        jid, m = push(sim, args)
        if (m["state"], m.get("reason")) != ("rejected", reason) or \
                part not in m.get("message", ""):
            problems.append("%s: %r" % (what, m))
        # rejected at once: nothing started
        if [x["state"] for x in states(sim, jid)] != ["rejected"]:
            problems.append("%s: states %r" % (what, states(sim, jid)))
    assert not problems, "\n".join(problems)
    assert snapshot(a.root) == before
    assert a.status()["certificate"]["serial"] == "20:01"
    no_work_files(a)
    # Each refusal is logged once, with its reason and mbedTLS's words.
    log = a.log()
    assert "rejected (untrusted): the chain does not lead" in log
    assert "BEGIN PRIVATE KEY" not in log and "BEGIN RSA" not in log


def test_dates_by_the_agents_clock(comsim, agent, cpki):
    """Validity is judged by the agent's wall clock (the test build's
    shifted one), not mbedTLS's: a year and a month on, the good
    certificate is expired; back in time, not valid yet."""
    sim = comsim()
    a = cert_agent(agent, sim, cpki)
    c, k = cpki.leaf()
    assert ctl(a, "test-clock %d" % (400 * 86400)) == "ok\n"
    m = push(sim, cpki.args(c, k))[1]
    assert (m["state"], m["reason"]) == ("rejected", "expired"), m
    later = (datetime.datetime.utcnow() + datetime.timedelta(days=400)).strftime("%Y-%m-%d")
    assert "the agent's clock reads %s" % later in m["message"], m
    assert ctl(a, "test-clock %d" % (-30 * 86400)) == "ok\n"
    m = push(sim, cpki.args(c, k))[1]
    assert (m["state"], m["reason"]) == ("rejected", "not_yet_valid"), m
    assert ctl(a, "test-clock 0") == "ok\n"
    assert push(sim, cpki.args(c, k))[1]["state"] == "succeeded"


def test_centralcert_off_is_not_allowed(comsim, agent, cpki):
    sim = comsim()
    a = cert_agent(agent, sim, cpki, central=False)
    c, k = cpki.leaf()
    m = push(sim, cpki.args(c, k))[1]
    assert (m["state"], m["reason"]) == ("rejected", "not_allowed"), m
    assert "centralcert" in m["message"], m
    assert not os.path.exists(os.path.join(a.root, CERTS))
    assert record(a) is None
    # remoteupgrade does not stand in for it
    assert "saved" in a.cli("settings", "set", "remoteupgrade=1").stdout
    m = push(sim, cpki.args(c, k))[1]
    assert (m["state"], m["reason"]) == ("rejected", "not_allowed"), m
    # turned on while running: applied at once
    assert "saved" in a.cli("settings", "set", "centralcert=1").stdout
    assert push(sim, cpki.args(c, k))[1]["state"] == "succeeded"


def test_hook_failure_leaves_the_record(comsim, agent, cpki):
    sim = comsim()
    a = cert_agent(agent, sim, cpki)
    c1, k1 = cpki.leaf(serial=0x3001)
    assert push(sim, cpki.args(c1, k1))[1]["state"] == "succeeded"
    rec = record(a)
    # The system's link replaced by a file: the hook refuses to touch it.
    link = os.path.join(a.root, CERTS, "current")
    os.unlink(link)
    put(a.root, os.path.join(CERTS, "current"), "not a link\n")
    c2, k2 = cpki.leaf(serial=0x3002)
    m = push(sim, cpki.args(c2, k2))[1]
    assert (m["state"], m["reason"]) == ("failed", "hook"), m
    assert m["message"] == "certificate: %s is not a symbolic link" % link, m
    assert record(a) == rec and record(a, "previous") is None
    assert a.status()["certificate"]["serial"] == "30:01"
    no_work_files(a)
    # and a failure to reload the services: the hook switches back
    os.unlink(link)
    os.symlink(installed_set(a, c1), link)
    shutil.rmtree(os.path.join(a.root, "run/ipoffice"))
    put(a.root, "run/ipoffice", "a file where the directory should be\n")
    m = push(sim, cpki.args(c2, k2))[1]
    assert (m["state"], m["reason"]) == ("failed", "hook"), m
    assert "cannot create" in m["message"], m
    assert os.readlink(link) == installed_set(a, c1)
    assert record(a) == rec


def installed_set(a, c):
    """The set directory of the certificates dir that holds c."""
    d = os.path.join(a.root, CERTS)
    for n in sorted(os.listdir(d)):
        if os.path.islink(os.path.join(d, n)):
            continue        # "current" points at the set that is in use
        p = os.path.join(d, n, "cert.pem")
        if os.path.exists(p) and der_list(open(p).read())[0] == der(c):
            return n
    raise AssertionError("no set holds the certificate")


# ------------------------------------------------------------------ rollback

def test_rollback_swaps_current_and_previous(comsim, agent, cpki):
    sim = comsim()
    a = cert_agent(agent, sim, cpki)
    m = push(sim, {"rollback": True})[1]
    assert (m["state"], m["reason"]) == ("rejected", "no_previous"), m
    assert m["message"] == "there is no previous certificate to roll back to"
    c1, k1 = cpki.leaf(serial=0x4001)
    c2, k2 = cpki.leaf(serial=0x4002)
    assert push(sim, cpki.args(c1, k1))[1]["state"] == "succeeded"
    # one installed, none before it: still nothing to roll back to
    m = push(sim, {"rollback": True})[1]
    assert (m["state"], m["reason"]) == ("rejected", "no_previous"), m
    assert push(sim, cpki.args(c2, k2))[1]["state"] == "succeeded"
    r1, r2 = record(a, "previous"), record(a)
    jid, m = push(sim, {"rollback": True})
    assert m["state"] == "succeeded", m
    assert m["message"].startswith("reinstalled the previous certificate for "
                                   "%s, serial 40:01" % NAME), m
    assert (record(a), record(a, "previous")) == (r1, r2)
    chain, key, _ = installed(a)
    assert der_list(chain) == [der(c1), der(cpki.inter)] and key == pem(k1)
    with open(os.path.join(a.root, RELOAD)) as f:
        assert jid in f.read()
    assert a.status()["certificate"]["serial"] == "40:01"
    # and back again
    assert push(sim, {"rollback": True})[1]["state"] == "succeeded"
    assert (record(a), record(a, "previous")) == (r2, r1)
    assert a.status()["certificate"]["serial"] == "40:02"
    assert installed(a)[1] == pem(k2)
    no_work_files(a)


def test_rollback_checks_the_previous_again(comsim, agent, cpki):
    """The previous certificate must still pass: here it has expired by
    the agent's clock (which moved on past it, not the current one)."""
    sim = comsim()
    a = cert_agent(agent, sim, cpki)
    c1, k1 = cpki.leaf(not_after=now_utc() + 20 * DAY)
    c2, k2 = cpki.leaf(not_after=now_utc() + 200 * DAY)
    for c, k in ((c1, k1), (c2, k2)):
        assert push(sim, cpki.args(c, k))[1]["state"] == "succeeded"
    before = snapshot(a.root)
    assert ctl(a, "test-clock %d" % (60 * 86400)) == "ok\n"
    m = push(sim, {"rollback": True})[1]
    assert (m["state"], m["reason"]) == ("rejected", "expired"), m
    assert m["message"].startswith("the previous certificate cannot be "
                                   "reinstalled: the certificate expired on"), m
    assert snapshot(a.root) == before


# ------------------------------------------------------------------ journal

def test_same_job_id_is_not_run_again(comsim, agent, cpki):
    sim = comsim()
    a = cert_agent(agent, sim, cpki)
    c1, k1 = cpki.leaf(serial=0x5001)
    jid, m = push(sim, cpki.args(c1, k1), jid="J-cert-once")
    assert m["state"] == "succeeded", m
    before = snapshot(a.root)
    since = sim.last_seq()
    c2, k2 = cpki.leaf(serial=0x5002)
    _, again = push(sim, cpki.args(c2, k2), jid="J-cert-once", since=since)
    assert again["state"] == "succeeded" and again["message"] == m["message"]
    sim.barrier(since)
    assert [x["state"] for x in states(sim, jid, since)] == ["succeeded"]
    assert snapshot(a.root) == before
    assert a.status()["certificate"]["serial"] == "50:01"
    r = a.cli("jobs", "--json")
    assert any(j["job"] == "J-cert-once" and j["op"] == "certificate"
               for j in json.loads(r.stdout)["jobs"])


def test_busy_beside_a_running_operation(comsim, agent, cpki):
    """Exclusive: a certificate job while a backup runs is rejected busy."""
    from test_jobs import big_system, hold_credit
    sim = comsim()
    hold_credit(sim, True)
    a = agent(sim, {"system": {"profile": "linux"},
                    "cert": {"ca_file": cpki.ca_file, "name": NAME}}, start=False)
    settings(a, remoteupgrade=True, centralcert=True)
    big_system(a)
    a.start()
    a.wait_connected()
    first = job(sim, "backup")
    wait_until(lambda: any(x.get("phase") == "upload" for x in states(sim, first)),
               30, "the backup's upload phase")
    c, k = cpki.leaf()
    m = push(sim, cpki.args(c, k))[1]
    assert (m["state"], m["reason"]) == ("rejected", "busy"), m
    assert first in m["message"]
    hold_credit(sim, False)
    assert wait_final(sim, first, 60)["state"] == "succeeded"
    assert push(sim, cpki.args(c, k))[1]["state"] == "succeeded"


# ------------------------------------------------------------------ config

def test_defaults_com_ca_and_system_name(comsim, agent, cpki):
    """[cert] unset: the CA is [com] ca_file (comsim's), the name
    [system] system_name (pbx-hq)."""
    sim = comsim()
    a = cert_agent(agent, sim, cpki, cert_conf={})
    with open(os.path.join(sim.dir, "ca.pem"), "rb") as f:
        sim_ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(sim.dir, "ca.key"), "rb") as f:
        sim_ca_key = serialization.load_pem_private_key(f.read(), None)
    # ours is not from comsim's CA
    c, k = cpki.leaf()
    m = push(sim, cpki.args(c, k))[1]
    assert (m["state"], m["reason"]) == ("rejected", "untrusted"), m
    c, k = cpki.leaf(dns=(NAME,), issuer=sim_ca, issuer_key=sim_ca_key)
    m = push(sim, cpki.args(c, k, []))[1]
    assert (m["state"], m["reason"]) == ("rejected", "name"), m
    assert m["message"] == "the certificate names %s, not %s" % (NAME, S), m
    c, k = cpki.leaf(dns=(S, NAME), issuer=sim_ca, issuer_key=sim_ca_key)
    m = push(sim, cpki.args(c, k, []))[1]
    assert m["state"] == "succeeded", m


def test_wildcard_and_cn_names(comsim, agent, cpki):
    sim = comsim()
    cert_agent(agent, sim, cpki)
    c, k = cpki.leaf(dns=("*.example",))
    assert push(sim, cpki.args(c, k))[1]["state"] == "succeeded"
    # no SAN at all: the CN is what counts
    c, k = cpki.leaf(dns=())
    m = push(sim, cpki.args(c, k))[1]
    assert (m["state"], m["reason"]) == ("rejected", "name"), m
    assert m["message"] == "the certificate names no-dns, not %s" % NAME


def test_bad_cert_config_is_reported(tmp_path):
    ini = str(tmp_path / "c.ini")
    write_ini(ini, {"com": {"url": "wss://com.example/agent/v1",
                            "ca_file": "/etc/ca.pem"},
                    "system": {"customer_id": C, "system_name": S},
                    "service_user": {"password": "x"},
                    "cert": {"name": "bad name!", "bogus": "1"}})
    import subprocess
    r = subprocess.run([COMAGENT_BIN, "check-config", "-c", ini],
                       capture_output=True, text=True)
    assert r.returncode == 2, r
    assert "name" in r.stderr and "bogus" in r.stderr, r.stderr


def test_ip500v2_profile(comsim, agent, cpki):
    sim = comsim()
    a = cert_agent(agent, sim, cpki, profile="ip500v2")
    c, k = cpki.leaf(serial=0x6001)
    m = push(sim, cpki.args(c, k))[1]
    assert m["state"] == "succeeded", m
    chain, key, _ = installed(a, "config/certs")
    assert der_list(chain) == [der(c), der(cpki.inter)] and key == pem(k)


def test_through_the_hook_runner(comsim, agent, cpki, tmp_path, runner):  # noqa: F811
    """The agent as nobody, the hook as root through the runner: root
    reads the agent's 0600 files; the record is the agent's own."""
    sim = comsim()
    hooks = make_hooks(tmp_path, {})
    # Relative: under [system] root, which is the agent's (nobody's).
    a = agent(sim, {"system": {"profile": "linux"}, "jobs": {"hooks_dir": hooks},
                    "cert": {"ca_file": "system-ca.pem", "name": NAME}},
              start=False, run_as=NOBODY)
    shutil.copy(cpki.ca_file, os.path.join(a.root, "system-ca.pem"))
    r = runner(a)
    a.config["jobs"]["hook_runner"] = r.path
    write_ini(a.ini, a.config, 0o600)
    r.configure(a.ini)
    settings(a, centralcert=True)
    a.start()
    a.wait_connected()
    assert proc_uid(a.proc.pid) == NOBODY[0]
    c, k = cpki.leaf(serial=0x7001)
    m = push(sim, cpki.args(c, k), timeout=60)[1]
    assert m["state"] == "succeeded", (m, r.log(), a.log()[-3000:])
    assert re.search(r"running \S+/linux/certificate \(pid \d+\)", r.log())
    _, key, s = installed(a)
    assert key == pem(k)
    assert os.stat(os.path.join(a.root, CERTS, s, "key.pem")).st_uid == 0
    cur = os.path.join(a.root, STORE, "current.pem")
    assert os.stat(cur).st_uid == NOBODY[0]
    assert a.status()["certificate"]["serial"] == "70:01"


# ------------------------------------------------------------------ the hook itself

def pair_files(root, c, k, chain=()):
    cp = os.path.join(root.out, "c.pem")
    kp = os.path.join(root.out, "c.key")
    with open(cp, "w") as f:
        f.write(pem(c) + "".join(pem(x) for x in chain))
    with open(kp, "w") as f:
        f.write(pem(k))
    os.chmod(kp, 0o600)
    return cp, kp


@pytest.fixture(params=("linux", "ip500v2"))
def hroot(request, tmp_path):
    return Root(tmp_path, request.param)


def cert_dir(root):
    return root.p(CERTS if root.profile == "linux" else "config/certs")


def test_hook_installs_and_keeps_one_before(hroot, cpki):
    root = hroot
    c1, k1 = cpki.leaf()
    cp, kp = pair_files(root, c1, k1, [cpki.inter])
    r = root.run("certificate", cp, kp)
    assert r.status == 0, r
    assert r.progress == [(10, "checking"), (50, "installing"),
                          (80, "switching"), (100, "done")]
    d = cert_dir(root)
    s1 = os.readlink(os.path.join(d, "current"))
    assert re.fullmatch(r"set-[0-9a-f]{16}", s1)
    with open(cp) as f, open(os.path.join(d, s1, "cert.pem")) as g:
        assert f.read() == g.read()
    assert stat.S_IMODE(os.stat(os.path.join(d, s1, "key.pem")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(d, s1, "cert.pem")).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o755
    assert root.text(RELOAD).rstrip().endswith(" J-20261123-0042")
    # again: the same set, nothing new
    assert root.run("certificate", cp, kp).status == 0
    assert sorted(os.listdir(d)) == ["current", s1]
    # two more: the newest and the one before stay
    c2, k2 = cpki.leaf()
    assert root.run("certificate", *pair_files(root, c2, k2)).status == 0
    s2 = os.readlink(os.path.join(d, "current"))
    c3, k3 = cpki.leaf()
    assert root.run("certificate", *pair_files(root, c3, k3)).status == 0
    s3 = os.readlink(os.path.join(d, "current"))
    assert sorted(os.listdir(d)) == sorted(["current", s2, s3])
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]


def test_hook_reload_failure_switches_back(hroot, cpki):
    root = hroot
    c1, k1 = cpki.leaf()
    assert root.run("certificate", *pair_files(root, c1, k1)).status == 0
    d = cert_dir(root)
    s1 = os.readlink(os.path.join(d, "current"))
    os.unlink(root.p(RELOAD))
    os.rmdir(root.p("run/ipoffice"))
    root.put("run/ipoffice", "in the way\n")
    c2, k2 = cpki.leaf()
    r = root.run("certificate", *pair_files(root, c2, k2))
    assert r.status == 1, r
    assert r.reason.startswith("cannot create"), r
    assert os.readlink(os.path.join(d, "current")) == s1


@pytest.mark.parametrize("args,code,reason", [
    ([], 2, "usage: certificate CERT_FILE KEY_FILE"),
    (["a.pem", "/k"], 2, "CERT_FILE must be an absolute path: a.pem"),
    (["/c", "k"], 2, "KEY_FILE must be an absolute path: k"),
    (["/nonexistent.pem", "/nonexistent.key"], 1, "no certificate file at /nonexistent.pem"),
])
def test_hook_usage(hroot, args, code, reason):
    before = hroot.snapshot()
    r = hroot.run("certificate", *args)
    assert (r.status, r.reason) == (code, reason), r
    assert hroot.snapshot() == before


def test_hook_refuses_what_is_not_pem(hroot, cpki):
    c, k = cpki.leaf()
    cp, kp = pair_files(hroot, c, k)
    before = hroot.snapshot()
    r = hroot.run("certificate", kp, kp)
    assert (r.status, r.reason) == (1, "not a PEM certificate: %s" % kp), r
    r = hroot.run("certificate", cp, cp)
    assert (r.status, r.reason) == (1, "not a PEM private key: %s" % cp), r
    assert hroot.snapshot() == before


def test_expiry_alarm_and_status_for_com(comsim, agent, cpki):
    """Within 90 days of its end the installed certificate raises a
    Security warning alarm at COM (issue 10); a renewal clears it. COM's
    status carries the certificate and its days left."""
    sim = comsim()
    a = cert_agent(agent, sim, cpki)
    c1, k1 = cpki.leaf(not_after=now_utc() + 60 * DAY +
                       datetime.timedelta(hours=1))
    jid, m = push(sim, cpki.args(c1, k1))
    assert m["state"] == "succeeded", m

    def com_alarm():
        return next((e for e in sim.alarms("C1001", "pbx-hq")
                     if e["id"] == "cert-expiry" and e["active"]), None)
    e = wait_until(com_alarm, 10, "the expiry alarm at COM")
    assert (e["type"], e["severity"]) == ("Security", "warning"), e
    assert "expires on" in e["text"] and "(60 days)" in e["text"], e
    st = wait_until(lambda: (sim.agent("C1001", "pbx-hq")["status"] or {})
                    .get("certificate"), 10, "the certificate in COM's status")
    assert st["subject"] == "CN=" + NAME and st["days_left"] == 60, st
    assert st["not_after"] == unix(c1.not_valid_after)
    lst = json.loads(a.cli("alarm", "list", "--json").stdout)["alarms"]
    assert [x["id"] for x in lst] == ["cert-expiry"]

    # A renewal far from its end clears it, at COM too.
    c2, k2 = cpki.leaf()
    jid, m = push(sim, cpki.args(c2, k2))
    assert m["state"] == "succeeded", m
    wait_until(lambda: com_alarm() is None, 10, "the alarm cleared at COM")
    assert json.loads(a.cli("alarm", "list", "--json").stdout)["alarms"] == []
    wait_until(lambda: (sim.agent("C1001", "pbx-hq")["status"] or {})
               .get("certificate", {}).get("days_left", 0) > 300, 10,
               "the renewal in COM's status")

