"""The agent's TLS policy toward COM: only TLS 1.2 with AEAD suites and
forward secrecy, and a certificate that is valid now, for the host name
dialled and issued by the configured CA. Each bad certificate is refused
the same way (never a WebSocket, 'Connection failed'); a clock that reads
1970 makes the agent wait for a valid clock instead of failing, and say so.

Certificates are made here with python3-cryptography, signed by comsim's
test CA where the case needs it."""
import datetime
import os
import time

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import ctl, never_connects, observe, wait_until

DAY = datetime.timedelta(days=1)


def _load_ca(directory):
    with open(os.path.join(directory, "ca.pem"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(directory, "ca.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return cert, key


def make_cert(directory, stem, not_before, not_after, name="localhost",
              self_signed=False):
    """server cert for `name` valid not_before..not_after, signed by the CA
    in directory (or by its own key); returns (pem path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    if self_signed:
        issuer, signer = subject, key
    else:
        ca_cert, signer = _load_ca(directory)
        issuer = ca_cert.subject
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(signer, hashes.SHA256()))
    pem = os.path.join(directory, stem + ".pem")
    kpath = os.path.join(directory, stem + ".key")
    with open(pem, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(kpath, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(kpath, 0o600)
    return pem, kpath


def make_cert_in(pki, tmp_path, stem, **kw):
    # The CA lives in the shared PKI dir; the new pair goes in tmp_path.
    d = str(tmp_path / stem)
    os.makedirs(d)
    for f in ("ca.pem", "ca.key"):
        with open(os.path.join(pki, f), "rb") as src, \
                open(os.path.join(d, f), "wb") as dst:
            dst.write(src.read())
    return make_cert(d, stem, **kw)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def test_negotiates_tls12_aead_with_forward_secrecy(comsim, agent):
    sim = comsim()
    a = agent(sim)
    a.wait_connected()
    ev = wait_until(lambda: sim.events("tls"), 5, "comsim's tls event")[0]
    assert ev["version"] == "TLSv1.2"
    assert ev["cipher"].startswith("ECDHE-"), ev
    assert "GCM" in ev["cipher"] or "CHACHA20" in ev["cipher"], ev


def test_cbc_only_server_refused(comsim, agent):
    # The server offers only CBC (MAC-then-encrypt) suites: no overlap.
    sim = comsim(extra_args=["--tls-ciphers",
                             "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA"])
    a = agent(sim)
    never_connects(sim, a, "a server offering only CBC suites")
    assert any("no shared cipher" in e["error"].lower() or
               "handshake failure" in e["error"].lower()
               for e in sim.events("tls_error")), sim.events("tls_error")


# (name, valid from, valid until in days from now, self-signed, what the
# agent's status says: lws's words for mbedTLS's verdict)
BAD_CERTS = [
    ("expired", -30, -1, False, "Cert expired"),
    ("not-yet-valid", 1, 30, False, "Cert from the future"),
    ("self-signed", -1, 30, True, "CA is not trusted"),
]


@pytest.mark.parametrize("name,start,until,self_signed,words", BAD_CERTS,
                         ids=[c[0] for c in BAD_CERTS])
def test_bad_certificate_refused(comsim, agent, pki, tmp_path, name, start,
                                 until, self_signed, words):
    pem, key = make_cert_in(pki, tmp_path, name,
                            not_before=_now() + start * DAY,
                            not_after=_now() + until * DAY,
                            self_signed=self_signed)
    sim = comsim(extra_args=["--tls-cert", pem, "--tls-key", key])
    st = never_connects(sim, agent(sim), "a %s certificate" % name)
    assert words in st["last_error"], st


def test_good_generated_certificate_accepted(comsim, agent, pki, tmp_path):
    # The control for the three above: the same generator, valid dates.
    pem, key = make_cert_in(pki, tmp_path, "good",
                            not_before=_now() - DAY,
                            not_after=_now() + 30 * DAY)
    sim = comsim(extra_args=["--tls-cert", pem, "--tls-key", key])
    agent(sim).wait_connected()


def test_clock_at_1970_waits_then_connects(comsim, agent):
    sim = comsim()
    # The box booted without a clock: it reads 1970-01-01 01:00 UTC.
    offset = 3600 - round(time.time())
    a = agent(sim, env={"COMAGENT_TEST_CLOCK": str(offset)})
    st = a.wait_status(lambda s: s.get("code") == "clock", 10,
                       "the agent waiting for a valid clock")
    assert st["state"] == "Waiting for a valid system clock"
    assert "reads 1970-01-01 " in st["last_error"], st
    assert "Waiting for a valid system clock" in a.cli("status").stdout
    wait_until(lambda: "waiting for a valid clock" in a.log(), 5,
               "the wait in the log")
    # It does not dial (no attempt counted, comsim sees nothing) over a few
    # of its 2 s looks at the clock ...
    observe(5)
    assert a.status()["attempts"] == 0
    assert not sim.events(("tls", "tls_error", "ws_open"))
    assert a.log().count("waiting for a valid clock") == 1
    # ... until NTP sets the clock: then it connects at once.
    assert ctl(a, "test-clock 0") == "ok\n"
    a.wait_connected()
    assert "the system clock is valid now" in a.log()
