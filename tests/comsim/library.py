"""COM's software library and its manifest signing keys, for comsim
(agent/PROTOCOL.md section 2.6 "The signed manifest", section 3.4).

Layout under the simulator's directory DIR:

    DIR/library/<release>/<component>   the component files
    DIR/library.json                    the releases' manifests (objects)
    DIR/pki/signing.json                the signing keys, oldest first; the
                                        last one is the current key
    DIR/pki/k<N>.key, k<N>.pub.pem      one key (EC P-256) and its public PEM
    DIR/pki/unlisted.key                a key that is never in the list (for
                                        "sign_with": "unknown")

Keys are made with the `openssl` command, signatures too (`openssl dgst
-sha256 -sign`: ECDSA P-256 over SHA-256 of the manifest text's UTF-8
bytes, DER, then base64).  Generated component bytes are deterministic:
1 MiB chunk i of component NAME of release R is
SHAKE-256("comsim-library\\0" R "\\0" NAME "\\0" i).digest(1 MiB), cut to
the size.  Stdlib only.
"""

import base64
import collections
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess

RELEASE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
PROFILES = ("ip500v2", "linux")
COMPONENTS_MAX = 16              # PROTOCOL.md 2.6: 1 ... 16 components
COMPONENT_MAX = 4 << 30          # the largest component comsim generates
CHUNK = 1 << 20


class LibraryError(Exception):
    """A request the library refuses: status (400, 404, 409) and message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def openssl(*args, data=None):
    """Run `openssl args...` (stdin: data); returns stdout bytes."""
    r = subprocess.run(["openssl", *args], input=data, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (
            args[0], r.stderr.decode("utf-8", "replace").strip()))
    return r.stdout


def check_name(name):
    """None if name is a valid component name (as for uploads), else why."""
    if not isinstance(name, str):
        return "name must be a string of 1..128 characters of [A-Za-z0-9._-]"
    if not NAME_RE.fullmatch(name):
        return "name %s is not 1..128 characters of [A-Za-z0-9._-]" % \
            json.dumps(name[:140])
    if name in (".", ".."):
        return "name %s is not a file name" % name
    return None


def filler(release, name, size):
    """The deterministic bytes of a generated component, in 1 MiB chunks."""
    i, left = 0, size
    while left > 0:
        n = min(CHUNK, left)
        seed = b"comsim-library\0%s\0%s\0%d" % (release.encode(), name.encode(), i)
        yield hashlib.shake_256(seed).digest(n)
        left -= n
        i += 1


def manifest_text(obj):
    """The manifest as sent: compact JSON, keys in PROTOCOL.md's order."""
    return json.dumps(obj, separators=(",", ":"))


def tamper(text):
    """Change one character of a manifest text, keeping it valid JSON: the
    first hex digit of the first sha256 (else the first digit)."""
    key = '"sha256":"'
    i = text.find(key)
    if i >= 0 and i + len(key) < len(text):
        j = i + len(key)
    else:
        j = next((k for k, ch in enumerate(text) if ch.isdigit()), None)
        if j is None:
            return text + " "
    return text[:j] + ("1" if text[j] == "0" else "0") + text[j + 1:]


def _write_json_atomic(path, obj):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


class Library:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.root = os.path.join(self.dir, "library")
        self.index_path = os.path.join(self.dir, "library.json")
        self.pki = os.path.join(self.dir, "pki")
        self.keys_path = os.path.join(self.pki, "signing.json")
        self.releases = collections.OrderedDict()   # release -> manifest object
        self.pending = set()                         # releases being built
        self.keys = []                               # {"id","key","pub"}, oldest first
        self.load()

    # -- releases
    def load(self):
        try:
            with open(self.index_path) as f:
                data = json.load(f)
        except FileNotFoundError:
            data = []
        except (OSError, ValueError) as e:
            raise ValueError("%s: %s" % (self.index_path, e))
        for m in data if isinstance(data, list) else []:
            if isinstance(m, dict) and isinstance(m.get("release"), str) and \
                    os.path.isdir(self.release_dir(m["release"])):
                self.releases[m["release"]] = m
        try:
            for fn in os.listdir(self.root):
                if fn.startswith(".new-"):       # a build that did not finish
                    shutil.rmtree(os.path.join(self.root, fn), ignore_errors=True)
        except FileNotFoundError:
            pass
        try:
            with open(self.keys_path) as f:
                keys = json.load(f)
        except FileNotFoundError:
            keys = []
        except (OSError, ValueError) as e:
            raise ValueError("%s: %s" % (self.keys_path, e))
        self.keys = [k for k in keys if isinstance(k, dict)
                     and os.path.isfile(os.path.join(self.pki, str(k.get("key"))))
                     and os.path.isfile(os.path.join(self.pki, str(k.get("pub"))))]

    def save(self):
        os.makedirs(self.dir, exist_ok=True)
        _write_json_atomic(self.index_path, list(self.releases.values()))

    def release_dir(self, release):
        return os.path.join(self.root, release)

    def component(self, release, name):
        """(path, component entry) of a library file, or None."""
        m = self.releases.get(release)
        if m is None or check_name(name) is not None:
            return None
        for c in m["components"]:
            if c["name"] == name:
                path = os.path.join(self.release_dir(release), name)
                return (path, c) if os.path.isfile(path) else None
        return None

    def validate(self, body):
        """Check a POST /library body; returns (release, profile, specs) with
        specs [(name, size, bytes or None)].  Raises LibraryError."""
        release, profile, comps = (body.get(k) for k in
                                   ("release", "profile", "components"))
        if not isinstance(release, str) or not RELEASE_RE.fullmatch(release):
            raise LibraryError(400, "release must be 1..64 characters of "
                               "[A-Za-z0-9._-], starting with a letter or digit")
        if release in self.releases or release in self.pending or \
                os.path.exists(self.release_dir(release)):
            raise LibraryError(409, "release %s is in the library already" % release)
        if profile not in PROFILES:
            raise LibraryError(400, "profile must be %s" % " or ".join(PROFILES))
        if not isinstance(comps, list) or not 1 <= len(comps) <= COMPONENTS_MAX:
            raise LibraryError(400, "components must be a list of 1..%d objects"
                               % COMPONENTS_MAX)
        specs, seen = [], set()
        for i, c in enumerate(comps):
            where = "components[%d]" % i
            if not isinstance(c, dict):
                raise LibraryError(400, "%s must be an object" % where)
            why = check_name(c.get("name"))
            if why:
                raise LibraryError(400, "%s: %s" % (where, why))
            name = c["name"]
            if name in seen:
                raise LibraryError(400, "%s: name %s appears twice" % (where, name))
            seen.add(name)
            if ("size" in c) == ("content_b64" in c):
                raise LibraryError(400, "%s: give size or content_b64 (one of them)"
                                   % where)
            if "size" in c:
                size = c["size"]
                if not isinstance(size, int) or isinstance(size, bool) or \
                        not 0 <= size <= COMPONENT_MAX:
                    raise LibraryError(400, "%s: size must be an integer 0..%d"
                                       % (where, COMPONENT_MAX))
                specs.append((name, size, None))
            else:
                try:
                    data = base64.b64decode(c["content_b64"], validate=True)
                except (ValueError, TypeError) as e:
                    raise LibraryError(400, "%s: content_b64: %s" % (where, e))
                specs.append((name, len(data), data))
        return release, profile, specs

    def build(self, release, profile, specs):
        """Write a release's files (blocking: run it in a thread) and return
        its manifest object.  The caller adds it with add()."""
        os.makedirs(self.root, exist_ok=True)
        tmp = os.path.join(self.root, ".new-" + secrets.token_hex(6))
        os.makedirs(tmp)
        try:
            comps = []
            for name, size, data in specs:
                h = hashlib.sha256()
                with open(os.path.join(tmp, name), "wb") as f:
                    for chunk in ([data] if data is not None
                                  else filler(release, name, size)):
                        f.write(chunk)
                        h.update(chunk)
                comps.append({"name": name, "version": release, "size": size,
                              "sha256": h.hexdigest()})
            os.rename(tmp, self.release_dir(release))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return {"release": release, "profile": profile, "components": comps}

    def add(self, manifest):
        self.releases[manifest["release"]] = manifest
        self.save()

    def make_manifest(self, release, manifest_patch=None, component_patch=None):
        """The manifest text of a release, patched for tests: component_patch
        is merged into every component, then manifest_patch into the top
        level."""
        m = self.releases[release]
        obj = {"release": m["release"], "profile": m["profile"],
               "components": [dict(c) for c in m["components"]]}
        if component_patch:
            for c in obj["components"]:
                c.update(component_patch)
        if manifest_patch:
            obj.update(manifest_patch)
        return manifest_text(obj)

    # -- signing keys
    def save_keys(self):
        os.makedirs(self.pki, exist_ok=True)
        _write_json_atomic(self.keys_path, self.keys)

    def ensure_key(self):
        if not self.keys:
            self.new_key()

    def _make_key(self, key, pub):
        tmp = key + ".tmp"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-out", tmp)
        os.chmod(tmp, 0o600)
        openssl("pkey", "-in", tmp, "-pubout", "-out", pub + ".tmp")
        os.replace(pub + ".tmp", pub)
        os.replace(tmp, key)

    def new_key(self):
        """A new signing key becomes the current one (rotation)."""
        os.makedirs(self.pki, exist_ok=True)
        n = 1 + max([int(k["id"][1:]) for k in self.keys
                     if re.fullmatch(r"k[0-9]+", str(k.get("id")))] + [0])
        kid = "k%d" % n
        self._make_key(os.path.join(self.pki, kid + ".key"),
                       os.path.join(self.pki, kid + ".pub.pem"))
        self.keys.append({"id": kid, "key": kid + ".key", "pub": kid + ".pub.pem"})
        self.save_keys()
        return self.keys_json()[-1]

    def keys_json(self):
        return [{"id": k["id"], "public_pem_path": os.path.join(self.pki, k["pub"]),
                 "current": i == len(self.keys) - 1}
                for i, k in enumerate(self.keys)]

    def key_file(self, which=None):
        """The private key file: None = the current key, "unknown" = one that
        is not in the list, else a listed key's id.  LibraryError if none."""
        if which == "unknown":
            path = os.path.join(self.pki, "unlisted.key")
            if not os.path.isfile(path):
                self._make_key(path, os.path.join(self.pki, "unlisted.pub.pem"))
            return path
        if which is None:
            if not self.keys:
                raise LibraryError(409, "no signing key")
            return os.path.join(self.pki, self.keys[-1]["key"])
        for k in self.keys:
            if k["id"] == which:
                return os.path.join(self.pki, k["key"])
        raise LibraryError(404, 'sign_with: no signing key %s (ids: %s, or "unknown")'
                           % (json.dumps(which),
                              ", ".join(k["id"] for k in self.keys) or "none"))

    def sign(self, text, which=None):
        """base64 of the DER ECDSA P-256 signature over SHA-256(text)."""
        der = openssl("dgst", "-sha256", "-sign", self.key_file(which),
                      data=text.encode("utf-8"))
        return base64.b64encode(der).decode("ascii")
