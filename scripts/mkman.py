#!/usr/bin/python3
"""mkman.py — generates the manual page comagent(8) from the agent itself.

    scripts/mkman.py --bin build/host/comagent \
        --example config/comagent.ini.example --out build/man/comagent.8 \
        [--date YYYY-MM-DD] [--hooks-dir DIR] [--doc-dir DIR]

Nothing in the page is kept by hand that the agent can say itself, so the
page cannot fall behind the code:

  COMMANDS       every command `comagent --help` lists, each with the text of
                 `comagent help CMD` (or `comagent CMD --help` when `help`
                 does not know it): usage lines, paragraphs, options;
  CONFIGURATION  every key `comagent config-keys` prints (the schema in
                 agent/conf.c) with its type, default, bounds and flags, and
                 as its description the comment right above it in the
                 example configuration. A key with no comment of its own
                 shares the one of the key above it (retry_min, retry_max);
                 a comment paragraph right after a section header and
                 followed by a blank line describes the section, and so does
                 one right before a (commented-out) section header
                 ([tunnel NAME]). The file's leading comment introduces the
                 section.

A key the schema has but the example does not describe (or the other way
round) is reported on stderr; the page still lists every schema key.
The date is --date, else SOURCE_DATE_EPOCH's, else today's (UTC).
Standard library only; the output is plain man(7) roff that
`groff -man -ww -z` and `man --warnings` pass silently.
"""

import argparse
import datetime
import os
import re
import subprocess
import sys


def run(binary, *args):
    r = subprocess.run([binary, *args], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout


# ---------------------------------------------------------------- roff text

ESC_TOKEN_EDGE = "()[],;:\"'`.|"


def roff_escape(text, code_words=frozenset(), code=False):
    """Plain text to roff: backslashes escaped; a hyphen becomes \\- (the
    minus/hyphen-minus a reader can paste) in options, paths, key and
    command names and ranges like 0-9, a typographic hyphen elsewhere
    ("customer-side")."""
    text = text.replace("\\", "\\e")
    if code:
        return text.replace("-", "\\-")
    out = []
    for tok in re.split(r"(\s+)", text):
        core = tok.strip(ESC_TOKEN_EDGE)
        if "-" in tok and (
                re.match(r"-+[A-Za-z0-9]", core)
                or "/" in core or "_" in core or "=" in core
                or core in code_words
                or re.fullmatch(r"[A-Za-z0-9]-[A-Za-z0-9]", core)):
            tok = tok.replace("-", "\\-")
        out.append(tok)
    return "".join(out)


def inline(text, code_words):
    """Prose with `code` spans (the example's comments) to roff: the spans
    in bold."""
    parts = re.split(r"`([^`]*)`", text)
    out = []
    for i, p in enumerate(parts):
        if i % 2:
            out.append("\\fB" + roff_escape(p, code=True) + "\\fR")
        else:
            out.append(roff_escape(p, code_words))
    return "".join(out)


def synopsis_block(usage, code_words):
    """Usage forms as .SY/.YS blocks: "comagent" and a hanging indent."""
    out = []
    for u in usage:
        rest = re.sub(r"^comagent\s*", "", u)
        out += [".SY comagent", line(synopsis(rest, code_words)), ".YS"]
    return out


def join_lines(lines):
    """Lines of a paragraph as one: a word hyphenated at a line's end
    ("comma-" + "separated") stays one word."""
    text = ""
    for ln in lines:
        ln = ln.strip()
        if re.search(r"[A-Za-z]-$", text) and re.match(r"[a-z]", ln):
            text += ln
        else:
            text += (" " if text else "") + ln
    return text


def line(text):
    """A text line: one starting with '.' or "'" would be a request."""
    text = text.strip()
    if text[:1] in (".", "'"):
        return "\\&" + text
    return text


def synopsis_word(w):
    """One word of a usage line: placeholders (FILE, KEY) italic, what is
    typed as it stands (options, subcommands, values) bold;
    alternatives (0|1) and assignments (state=STATE) piece by piece."""
    if "|" in w:
        return "|".join(synopsis_word(p) for p in w.split("|"))
    if "=" in w and not w.startswith("-"):
        name, _, value = w.partition("=")
        return synopsis_word(name) + "=" + synopsis_word(value)
    if not w:
        return ""
    font = "I" if re.fullmatch(r"[A-Z][A-Z0-9_]*", w) else "B"
    return "\\f%s%s\\fR" % (font, roff_escape(w, code=True))


def synopsis(text, code_words):
    """A usage line, its words formatted (synopsis_word); an [optional
    group] is kept on one output line."""
    out = []
    depth = 0
    for tok in re.split(r"(\s+|[\[\]]|\.\.\.)", text):
        if not tok:
            continue
        if tok.isspace():
            out.append("\\ " if depth else " ")
        elif tok in "[]" or tok == "...":
            depth += {"[": 1, "]": -1}.get(tok, 0)
            out.append(tok)
        else:
            out.append(synopsis_word(tok))
    return "".join(out).strip()


# ------------------------------------------------------------ --help texts

def parse_command_list(main_help):
    """The "Commands:" block of `comagent --help`: [(name, args, summary)]."""
    cmds = []
    in_block = False
    for ln in main_help.splitlines():
        if ln.strip() == "Commands:":
            in_block = True
            continue
        if not in_block:
            continue
        if not ln.strip():
            if cmds:
                break
            continue
        m = re.match(r"^  (\S+)(?:\s+(.*))?$", ln)
        if m and not ln.startswith("   "):
            rest = m.group(2) or ""
            args = ""
            a = re.match(r"^((?:\[[^\]]*\]\s*)+)(.*)$", rest)
            if a:
                args, rest = a.group(1).strip(), a.group(2)
            cmds.append([m.group(1), args, rest.strip()])
        elif cmds:
            cmds[-1][2] = (cmds[-1][2] + " " + ln.strip()).strip()
    return [tuple(c) for c in cmds]


def parse_help(text):
    """A command's help: (usage lines, [("p", text) | ("opt", opt, text)])."""
    usage, body = [], []
    lines = text.splitlines()
    i = 0
    # Usage lines: "Usage: ..." and the lines after it up to a blank one
    # (a second form "       comagent ..." or a continuation).
    while i < len(lines) and lines[i].strip():
        ln = lines[i]
        if ln.startswith("Usage:"):
            usage.append(ln[len("Usage:"):].strip())
        elif re.match(r"^\s+comagent\b", ln) or not usage:
            usage.append(ln.strip())
        else:
            usage[-1] += " " + ln.strip()
        i += 1
    para = []
    opt = None

    def flush():
        nonlocal para
        if para:
            body.append(("p", join_lines(para)))
            para = []

    for ln in lines[i:]:
        if not ln.strip():
            flush()
            opt = None
            continue
        m = re.match(r"^\s{2,}(-\S.*?)(?:\s{2,}(\S.*))?$", ln)
        if m:
            flush()
            opt = ["opt", m.group(1).strip(), (m.group(2) or "").strip()]
            body.append(opt)
        elif opt is not None and re.match(r"^\s{6,}", ln):
            opt[2] = (opt[2] + " " + ln.strip()).strip()
        else:
            opt = None
            para.append(ln.strip())
    flush()
    return usage, [tuple(b) for b in body]


def help_of(binary, name, main_help):
    """`comagent help NAME`, else `comagent NAME --help`; None when neither
    is the command's own (both give the command list)."""
    for args in (("help", name), (name, "--help")):
        rc, out = run(binary, *args)
        if rc == 0 and out.strip() and out != main_help and \
                out.startswith("Usage:"):
            return out
    return None


# --------------------------------------------------------------- config-keys

def parse_keys(text):
    """`comagent config-keys`: [(section, {field: value},
    [(key, {field: value})])] in the agent's order."""
    sections = []
    target = None
    for ln in text.splitlines():
        if not ln.strip():
            continue
        m = re.match(r"^\[(.+)\]$", ln)
        if m:
            sections.append((m.group(1), {}, []))
            target = sections[-1][1]
            continue
        m = re.match(r"^ {2}(\S+)$", ln)
        if m and sections:
            sections[-1][2].append((m.group(1), {}))
            target = sections[-1][2][-1][1]
            continue
        m = re.match(r"^\s{4,}(\w+):\s+(.*)$", ln)
        if m and target is not None:
            target[m.group(1)] = m.group(2)
            continue
        raise SystemExit("mkman: cannot read config-keys line: %r" % ln)
    return sections


# ------------------------------------------------------ the example's comments

def section_id(name):
    """The schema's name for an example section: [tunnel X] is
    [tunnel NAME]."""
    name = " ".join(name.split())
    return "tunnel NAME" if name.startswith("tunnel ") else name


def parse_example(path):
    """(file intro, {section: intro}, {(section, key): description})."""
    header, intros, descs = [], {}, {}
    section = None
    block = []          # comment lines since the last blank/key/header
    shared = None       # the description of the key just above
    seen_key = False
    with open(path, encoding="utf-8") as f:
        for raw in f:
            s = raw.rstrip("\n")
            st = s.strip()
            hdr = re.match(r"^#?\s*\[([^\]]+)\]\s*$", st)
            key = re.match(r"^(?:#(?=\S))?([A-Za-z0-9_.-]+)\s*=", st)
            if not st:
                if block:
                    if section is None:
                        header.extend(block)
                    elif not seen_key and section not in intros:
                        intros[section] = join_lines(block)
                block, shared = [], None
            elif hdr and (st.startswith("[") or st.startswith("#")):
                section = section_id(hdr.group(1))
                if block:
                    intros[section] = join_lines(block)
                block, shared, seen_key = [], None, False
            elif key:
                name = "NAME" if section == "network" else key.group(1)
                desc = join_lines(block) if block else shared
                if desc and (section, name) not in descs:
                    descs[(section, name)] = desc
                shared, block, seen_key = desc, [], True
            elif st.startswith("#") or st.startswith(";"):
                block.append(st[1:].strip())
    return join_lines(header), intros, descs


# ------------------------------------------------------------------ the page

def render(binary, example, date, hooks_dir, doc_dir):
    rc, main_help = run(binary, "--help")
    if rc != 0 or "Commands:" not in main_help:
        raise SystemExit("mkman: %s --help gave no command list" % binary)
    rc, version = run(binary, "version")
    version = version.split()[-1] if rc == 0 and version.split() else "?"
    rc, keys_text = run(binary, "config-keys")
    if rc != 0:
        raise SystemExit("mkman: %s config-keys failed" % binary)
    commands = parse_command_list(main_help)
    if not commands:
        raise SystemExit("mkman: no commands in %s --help" % binary)
    sections = parse_keys(keys_text)
    header, intros, descs = parse_example(example)
    names = {c[0] for c in commands}
    keynames = {k for _, _, ks in sections for k, _ in ks}
    code_words = frozenset(names | keynames | {"comagent"})
    _, main_body = parse_help(main_help)

    def esc(t):
        return roff_escape(t, code_words)

    out = [
        '.\\" Generated by scripts/mkman.py from the built agent (--help, '
        'help COMMAND,',
        '.\\" config-keys) and config/comagent.ini.example. Do not edit: '
        'change those.',
        '.TH COMAGENT 8 %s "comagent %s" "System Administration"'
        % (date, esc(version)),
        # Paths and option names read better whole: no hyphenation (the
        # man macros restore the HY mode at every paragraph: .nh alone
        # would not last), and ragged right rather than stretched spaces.
        ".nr HY 0",
        ".nh",
        ".ad l",
        ".SH NAME",
        "comagent \\- Customer Operations Manager (COM) agent for IP Office "
        "systems",
        ".SH SYNOPSIS",
    ]
    helps = {}
    for name, args, summary in commands:
        helps[name] = help_of(binary, name, main_help)
    for name, args, summary in commands:
        text = helps[name]
        usage = parse_help(text)[0] if text else [
            " ".join(x for x in ("comagent", name, args) if x)]
        out += synopsis_block(usage, code_words)
    out.append(".SH DESCRIPTION")
    # The paragraph(s) of `comagent --help` before the command list.
    intro = []
    for ln in main_help.split("Commands:")[0].splitlines()[1:]:
        intro.append(ln.strip())
    paras = [p for p in re.split(r"\n\s*\n", "\n".join(intro)) if p.strip()]
    for p in paras:
        out += [".PP", line(esc(" ".join(p.split())))]
    out += [
        ".PP",
        line(esc("On a Linux (Server Edition) server the agent runs as the "
                 "system user comagent under comagent.service, in a systemd "
                 "sandbox; the platform hooks that need root (backup, "
                 "restore, upgrade, reboot) run through comagent-hooks.socket, "
                 "which starts comagent hook-runner as root for each request "
                 "([jobs] hook_runner). The service starts only once "
                 "/etc/comagent/comagent.ini exists.")),
    ]
    # Options every command takes, and the exit codes, from --help.
    exit_line = None
    for item in main_body:
        if item[0] == "opt":
            out += [".TP", "\\fB" + roff_escape(item[1], code=True)
                    .replace("FILE", "\\fIFILE\\fB") + "\\fR",
                    line(esc(item[2]))]
        elif item[1].startswith("Exit codes:"):
            exit_line = item[1]
        elif item[1].startswith("Every command") or \
                item[1].startswith("Usage"):
            out += [".PP", line(esc(item[1]))]

    out.append(".SH COMMANDS")
    for name, args, summary in commands:
        out.append(".SS " + synopsis(" ".join(x for x in (name, args) if x),
                                     code_words))
        text = helps[name]
        if not text:
            s = summary[:1].upper() + summary[1:]
            out += [line(esc(s + ("" if s.endswith(".") else ".")))]
            continue
        usage, body = parse_help(text)
        out += synopsis_block(usage, code_words)
        for item in body:
            if item[0] == "p":
                out += [".PP", line(esc(item[1]))]
            else:
                tag = re.sub(r"(?<![A-Za-z])([A-Z][A-Z]+)(?![A-Za-z])",
                             r"\\fI\1\\fB",
                             roff_escape(item[1], code=True))
                out += [".TP", "\\fB" + tag + "\\fR"]
                if item[2]:
                    out.append(line(esc(item[2])))

    out.append(".SH CONFIGURATION")
    if header:
        out += [".PP", line(inline(header, code_words))]
    out += [".PP", line(esc(
        "Each key below is shown with its type, default, accepted values "
        "and flags as the agent itself reports them "
        "(comagent config-keys); relative paths are taken under "
        "[system] root."))]
    described = set()
    for sec, fields, keys in sections:
        title = "[" + sec + "]"
        out.append(".SS " + roff_escape(title, code=True)
                   .replace("NAME", "\\fINAME\\fR"))
        if intros.get(sec):
            out += [".PP", line(inline(intros[sec], code_words))]
        if fields.get("note"):
            out += [".PP", line(esc(fields["note"][:1].upper() +
                                    fields["note"][1:] + "."))]
        for key, f in keys:
            if sec == "network" and key == "NAME":
                tag = "\\fINAME\\fR = \\fIADDRESS\\fR"
            else:
                tag = "\\fB" + roff_escape(key, code=True) + "\\fR"
            out += [".TP", tag]
            d = descs.get((sec, key))
            if d:
                described.add((sec, key))
                out.append(line(inline(d, code_words)))
            else:
                print("mkman: [%s] %s: no comment describes it in %s"
                      % (sec, key, example), file=sys.stderr)
                out.append("(Not described in the example configuration.)")
            facts = [("Type", f.get("type")), ("Default", f.get("default")),
                     ("Values", f.get("bounds")), ("Flags", f.get("flags")),
                     ("Note", f.get("note"))]
            for label, value in facts:
                if value:
                    out += [".br", line("\\fI%s:\\fR %s" % (label,
                                                           esc(value)))]
    for sec, key in sorted(set(descs) - described):
        print("mkman: [%s] %s is in %s but not in the agent's schema"
              % (sec, key, example), file=sys.stderr)

    plat = {}
    for sec, _, keys in sections:
        for key, f in keys:
            m = re.search(r"linux: ([^;)]+)", f.get("default", ""))
            if m:
                plat[(sec, key)] = "/" + m.group(1).strip().lstrip("/")
    config = "/etc/comagent/comagent.ini"
    m = re.search(r"\(default (/\S+)\)", main_help)
    if m:
        config = m.group(1)
    files = [
        (config, "The configuration: it holds the service user's password. "
         "Root's, mode 0640 with group comagent so that the agent's user "
         "reads it (0600 where the agent runs as root)."),
        (config + ".example", "The example configuration, every key "
         "described."),
        ("/lib/systemd/system/comagent.service", "The agent's unit."),
        ("/lib/systemd/system/comagent-hooks.socket", "The hook runner's "
         "socket unit, listening on /run/comagent-hooks.sock."),
        ("/lib/systemd/system/comagent-hooks@.service", "One hook run as "
         "root per connection."),
        (hooks_dir + "/", "The platform hooks, PROFILE/NAME "
         "([jobs] hooks_dir)."),
    ]
    for (sec, key), what in ((("system", "state_dir"), "State: settings, "
                              "the job journal, the custom-files manifest."),
                             (("logs", "store_dir"), "The store of the PBX's "
                              "syslog."),
                             (("log", "file"), "The agent's own log (and its "
                              "rotated copy .1)."),
                             (("system", "control_socket"), "The control "
                              "socket of comagent status and the other "
                              "commands that ask the running agent.")):
        if (sec, key) in plat:
            files.append((plat[(sec, key)], what))
    out.append(".SH FILES")
    out.append("Paths for the linux profile with [system] root /.")
    for path, what in files:
        out += [".TP", "\\fI" + roff_escape(path, code=True) + "\\fR",
                line(esc(what))]

    out.append(".SH EXIT STATUS")
    codes = re.findall(r"(\d+) ([^,.]+)", exit_line or "")
    for code, what in codes:
        out += [".TP", ".B " + code, line(esc(what[:1].upper() + what[1:] +
                                              "."))]
    out += [".PP", line(esc("comagent run exits 0 after SIGTERM or SIGINT, "
                            "once it has closed the link to COM cleanly."))]

    out += [
        ".SH SEE ALSO",
        ".BR systemctl (1),",
        ".BR journalctl (1),",
        ".BR systemd.service (5),",
        ".BR systemd.socket (5)",
        ".PP",
        line(esc("README.md (building, running, what the agent does) and "
                 "HOOKS.md (the contract of the platform hooks) in %s when "
                 "installed from the Debian package; in the source tree "
                 "README.md and scripts/HOOKS.md. The protocol with COM is "
                 "agent/PROTOCOL.md in the source tree." % doc_dir)),
    ]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--example", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--date")
    ap.add_argument("--hooks-dir", default="/usr/libexec/comagent")
    ap.add_argument("--doc-dir", default="/usr/share/doc/comagent")
    a = ap.parse_args()
    date = a.date
    if not date:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        when = (datetime.datetime.fromtimestamp(int(epoch),
                                                datetime.timezone.utc)
                if epoch else datetime.datetime.now(datetime.timezone.utc))
        date = when.strftime("%Y-%m-%d")
    page = render(a.bin, a.example, date, a.hooks_dir, a.doc_dir)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
