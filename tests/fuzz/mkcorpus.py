#!/usr/bin/env python3
"""mkcorpus.py — (re)generates the checked-in seed corpora of the libFuzzer
harnesses, tests/fuzz/corpus/<name>/, from the unit tests' examples: a few
small valid inputs and a few interesting invalid ones per target.
Deterministic; run from anywhere: python3 tests/fuzz/mkcorpus.py"""
import io, os, shutil, struct, tarfile, gzip

HERE = os.path.dirname(os.path.abspath(__file__))
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHB = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def proto():
    s = {
        "hello": '{"type":"hello","id":1,"proto":1,"system":"pbx-hq","customer":"C1001"}',
        "welcome": '{"type":"welcome","id":1,"re":1,"session":"s-1","window":65536}',
        "refused": '{"type":"refused","id":1,"re":1,"reason":"auth_failed","message":"bad password"}',
        "ack": '{"type":"ack","id":5,"re":2}',
        "job": '{"type":"job","id":9,"job":"J-1","op":"backup","args":{"vmpro":"full","prune":true,"name":"x.cfg"}}',
        "job_elements": '{"type":"job","id":9,"args":{"elements":["a","b\\u00e9","\\ud83d\\ude00"]}}',
        "job_upgrade": '{"type":"job","id":10,"job":"J-2","op":"upgrade","args":{"manifest":"{\\"release\\":\\"12.0\\"}","signature":"MEUCIQ==","restart_phones":false,"allow_downgrade":true}}',
        "stream_open": '{"type":"stream.open","id":20,"stream":4,"host":"10.0.0.5","port":22,"kind":"tunnel"}',
        "nested": '{"type":"t","id":1,"d":[[[[[1]]]]],"o":{"p":{"q":{"r":{"s":{"t":"u"}}}}}}',
        "numbers": '{"type":"t","id":9007199254740991,"max":9223372036854775807,"f":1.5e3,"neg":-0}',
        "bad_lone_surrogate": '{"type":"t","id":1,"s":"\\ud800"}',
        "bad_no_id": '{"type":"t"}',
        "bad_trailing": '{"type":"t","id":1} x',
    }
    for k, v in s.items():
        put("proto", k, v)


def customdata():
    full = ('<?xml version="1.0" encoding="utf-8"?>\n<customdata version="1">\n'
            "  <security>\n    <centralmgmt>1</centralmgmt>\n    <centralcert>0</centralcert>\n"
            "    <remoteaccess>1</remoteaccess>\n    <remoteupgrade>1</remoteupgrade>\n"
            "    <logtransfer>1</logtransfer>\n    <externalremoteaccess>0</externalremoteaccess>\n"
            "  </security>\n  <vmpro>\n    <backupconfig>1</backupconfig>\n"
            "    <backupprompts>0</backupprompts>\n    <backupmailboxes>1</backupmailboxes>\n"
            "  </vmpro>\n</customdata>\n")
    put("customdata", "full", full)
    put("customdata", "bom_cdata", "\ufeff" + '<customdata version="1"><vmpro><backupprompts> 1\n</backupprompts></vmpro>'
        '<security><remoteaccess>\t0 </remoteaccess><centralmgmt><![CDATA[1]]></centralmgmt></security>'
        '<!-- c --></customdata>')
    put("customdata", "empty", '<customdata version="1"/>')
    put("customdata", "bad_doctype", '<!DOCTYPE x [<!ENTITY a "aaaa">]><customdata version="1">&a;</customdata>')
    put("customdata", "bad_utf16", '<?xml version="1.0" encoding="UTF-16"?><customdata version="1"/>')
    put("customdata", "bad_dup", '<customdata version="1"><security><centralmgmt>1</centralmgmt>'
        '<centralmgmt>0</centralmgmt></security></customdata>')
    put("customdata", "entities", '<customdata version="1"><security><logtransfer>&#49;</logtransfer>'
        '</security><vmpro><backupconfig>&#x30;</backupconfig></vmpro></customdata>')


def tarball(members, fmt=tarfile.PAX_FORMAT):
    """A tar without the padding to 10 KiB: members, then two zero blocks."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for m in members:
            name, kind, data = m
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = 0o644
            if kind == "f":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            elif kind == "d":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "l":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                t.addfile(ti)
            elif kind == "h":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
                t.addfile(ti)
            elif kind == "p":
                ti.type = tarfile.FIFOTYPE
                t.addfile(ti)
    raw = b.getvalue()
    # keep everything up to the end-of-archive marker
    end = len(raw)
    while end >= 512 and raw[end - 512:end] == bytes(512):
        end -= 512
    return raw[:end] + bytes(1024)


def customtar():
    put("customtar", "two_files", tarball([("a.txt", "f", b"hello\n"), ("b.cfg", "f", b"x=1\n")]))
    put("customtar", "dotslash", tarball([("./", "d", None), ("./phone.cfg", "f", b"cfg\n")], tarfile.GNU_FORMAT))
    put("customtar", "ustar_empty_file", tarball([("empty.bin", "f", b"")], tarfile.USTAR_FORMAT))
    put("customtar", "bad_dotdot", tarball([("../evil", "f", b"x")]))
    put("customtar", "bad_symlink", tarball([("link", "l", "/etc/passwd")]))
    put("customtar", "bad_hardlink", tarball([("a", "f", b"x"), ("b", "h", "a")]))
    put("customtar", "bad_subdir", tarball([("d/", "d", None), ("d/x", "f", b"x")]))
    put("customtar", "bad_46xx", tarball([("46XXsettings.txt", "f", b"SET X 1\n")]))
    put("customtar", "bad_dup", tarball([("a", "f", b"1"), ("a", "f", b"2")]))
    put("customtar", "bad_gzip", gzip.compress(tarball([("a", "f", b"1")]), mtime=0))


CONF_MIN = """[com]
url = wss://com.example.net/agent/v1
ca_file = /etc/comagent/com-ca.pem
ping_interval = 30s
idle_timeout = 90s

[system]
profile = linux
customer_id = C1001
system_name = pbx-hq
root = /

[service_user]
name = COMAdmin
password = change-me

[log]
level = info
"""


def conf():
    with open(os.path.join(HERE, "..", "..", "config", "comagent.ini.example")) as f:
        put("conf", "example", f.read())
    put("conf", "minimal", CONF_MIN)
    put("conf", "tunnels", CONF_MIN + """
[network]
voicemail = 10.0.0.7
media = media.example.net

[tunnel rdp-terminal]
application = rdp
address = 10.0.0.9
port = 3389

[tunnel web]
application = https
address = ::ffff:10.0.0.10
port = 443
""")
    put("conf", "proxy_jobs", CONF_MIN + """
[com]
""" + """proxy = proxy.example.net:3128
proxy_user = agent
proxy_password = secret
""")
    put("conf", "bad_keys", "[com]\nurl = http://x\nnope = 1\n[system]\nprofile = windows\n[log]\nmax_size = 10Q\n")
    put("conf", "bad_syntax", "[com\nurl\n=x\n; comment\n# c\n[tunnel ]\n[tunnel a b]\n")


def intake():
    # byte 0: msg_max selector, byte 1: chunking seed, then the stream
    msgs = [
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - BOM'su root' failed",
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time",
        b"<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App\"] msg",
        b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
        b"<0>",
        b"<13>2 files deleted",
    ]
    put("intake", "octet_counting", b"\x40\x07" + b"".join(b"%d %s" % (len(m), m) for m in msgs))
    put("intake", "lf_framing", b"\x10\x33" + b"".join(m + b"\n" for m in msgs))
    put("intake", "crlf_nul_mix", b"\x05\x01" + msgs[0] + b"\r\n\n\r" + msgs[3] + b"\0" + b"3 <0>" + msgs[1] + b"\n")
    put("intake", "truncated", b"\x01\xff" + b"40 <13>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + b"<13>" + b"b" * 50 + b"\n" + b"4 <1>")
    put("intake", "bad_framing", b"\x20\x02" + msgs[3] + b"\nx" + msgs[0])
    put("intake", "binary", b"\x30\x09<13>\xc0\xaf\x01 bin\n<13>\xed\xa0\x80\n")


def manifest():
    good = ('{"release":"12.0.1.0","profile":"linux","components":['
            '{"name":"ipoffice-12.0.1.0.bin","version":"12.0.1.0","size":10485760,"sha256":"%s"},'
            '{"name":"phones_12.0.tar","version":"12.0.1.0","size":0,"sha256":"%s"}]}' % (SHA, SHB))
    # first line: the signature's base64; "*" has the harness sign the text
    put("manifest", "signed_good", "*\n" + good)
    put("manifest", "signed_extra", "*\n" + '{"release":"11.1","profile":"ip500v2","x":{"y":[1,{"z":null}]},"components":['
        '{"name":"a.bin","version":"11.1 (3)","size":1099511627776,"sha256":"%s","note":"n"}]}' % SHA)
    put("manifest", "unsigned", "MEUCIQDmGb8Yk3x0S6n7yY1H8Ckq0ZqYtQ2pZ8yM2qk4VjTj1gIgBa1v1w6xkTjR6Q0Gv7G8f0y0b9vGm0Yp0Yt5uNQ3h9k=\n" + good)
    put("manifest", "bad_b64", "!!notbase64\n" + good)
    put("manifest", "bad_dup_name", "*\n" + '{"release":"1","profile":"linux","components":[{"name":"a","version":"1","size":1,"sha256":"%s"},'
        '{"name":"a","version":"1","size":1,"sha256":"%s"}]}' % (SHA, SHA))
    # found by this harness: strings longer than two LEJP chunks (agent/manifest.c)
    put("manifest", "regress_long_strings", "*\n" + '{"release":"11.1%s","profile":"linux","components":['
        '{"name":"%s","version":"1","size":1,"sha256":"%s"}]}' % ("B" * 300, "n" * 600, SHA))
    put("manifest", "bad_sha", "*\n" + '{"release":"1..2","profile":"linux","components":[{"name":"..","version":"1","size":-1,"sha256":"%s"}]}' % SHA.upper())


def job():
    rec = ('{"type":"job","id":%d,"job":"%s","op":"%s","state":"%s","progress":%d,"reason":"%s","message":"%s",'
           '"created":1795431066,"updated":1795431070,"acked":%s,"phase":"%s","target":"%s","phones":false,"local":false}')
    put("job", "journal", "\n".join([
        rec % (1, "J-1", "backup", "succeeded", 100, "", "done", "true", "upload", ""),
        rec % (2, "J-2", "upgrade", "running", 40, "", "", "false", "restart", "12.0.1.0"),
        rec % (3, "J-3", "restore", "running", 10, "", "", "false", "backup", ""),
        rec % (4, "J-4", "fetch_logs", "failed", 0, "interrupted", "caf\\u00e9 \\\"q\\\"", "false", "", ""),
    ]) + "\n")
    put("job", "minimal", '{"type":"job","id":1,"job":"x","op":"backup","state":"accepted","progress":0,'
        '"reason":"","message":"","created":0,"updated":0,"acked":false}\n\n')
    put("job", "bad_lines", '{"type":"status","id":1}\n{"type":"job","id":2,"job":"","op":"x"}\nnot json\n'
        '{"type":"job","id":3,"job":"J\\u0001","op":"b","state":"weird","progress":101,"reason":"","message":"",'
        '"created":1,"updated":1,"acked":true}\n')
    put("job", "dup", (rec % (1, "J-1", "backup", "rejected", 0, "busy", "", "true", "", "") + "\n") * 2)


def settings():
    put("settings", "all", "# comment\ncentralmgmt=1\nlogtransfer=0\nremoteupgrade=1\nremoteaccess=1\n"
        "externalremoteaccess=0\ncentralcert=1\n")
    put("settings", "blanks", "  centralmgmt =  1 \n\n\t# x\nremoteaccess\t=\t0\r\n")
    put("settings", "bad", "centralmgmt=2\nfoo=1\ncentralmgmt=1\nnoequals\nremoteaccess=1\0=1\n=\n")


def logstore():
    import hashlib
    put("logstore", "manifest", "log-20261201-001.log.gz 26 %s 1\nlog-20261201-002.log.gz 26 %s 0\n"
        "log-20261130-999.log.gz 0 %s 0\n" % (SHA, SHB, SHB))
    put("logstore", "dup_bad", "log-20261201-001.log.gz 1 %s 0\nlog-20261201-001.log.gz 26 %s 1\n"
        "log-2026120-001.log.gz 1 %s 0\nlog-20261201-001.log 1 x 0\n\n" % (SHA, SHA, SHA))


def hookrun():
    # Byte 0: 1 = the three descriptors come with the request.
    put("hookrun", "backup", b"\x01hook backup\narg /var/lib/comagent/work/b.tar.gz\n"
        b"arg etc/ipoffice\nenv COMAGENT_ROOT=/\nenv COMAGENT_JOB=J-1\nend\n")
    put("hookrun", "certificate", b"\x01hook certificate\n"
        b"arg /var/lib/comagent/work/certificate.pem\n"
        b"arg /var/lib/comagent/work/certificate.key\nenv COMAGENT_ROOT=/\nend\n")
    put("hookrun", "no_fds", b"\x00hook reboot\nend\n")
    put("hookrun", "bad", b"\x01hook evil\nenv PATH=/tmp\narg\nfoo bar\nend\nend\n")
    put("hookrun", "unterminated", b"\x01hook upgrade\narg x")


def tunnel():
    import struct

    # Byte 0: settings bits (centralmgmt, remoteaccess, externalremoteaccess),
    # bytes 1-8: the port (int64 LE), then "system\0host".
    def t(name, flags, port, system, host=None):
        put("tunnel", name, bytes([flags]) + struct.pack("<q", port) + system.encode()
            + (b"\0" + host.encode() if host is not None else b""))
    t("ssh_self", 7, 22, "")
    t("webmanager", 1, 8443, "")
    t("network", 7, 443, "voicemail")
    t("colocated", 7, 3389, "", "10.0.0.9")
    t("colocated_v6", 7, 8080, "", "::ffff:10.0.0.10")
    t("refused", 0, 22, "nosuch", "10.9.9.9")
    t("bad_port", 7, 70000, "")


if __name__ == "__main__":
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    for f in (proto, customdata, customtar, conf, intake, manifest, job, settings, logstore,
              hookrun, tunnel):
        f()
