"""The hostile-input corpus: what an attacker or a careless operator feeds the command line.

Every case (the cases of ../shared/design/hostile-inputs.md and more) must end in a clear error
naming the input — `path:line:col: error: …` for a file — with exit 1, no traceback, within a
generous time and 512 MB of memory, and without changing the store's data or the outbox. The
HTTP cases are in test_hostile_requests.py.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.helpers import Repo
from tests.hostile import APPLY, Case, Result, problems, run_case

NOTICE = "kind: notice\ntargets: {all: true}\nsubject: Hello\ncontent: Hi\n"
N = "broadcasts/notices/x.yaml"
E = "emails/payment_failed_admin.yaml"


def notice(**fields: str) -> str:
    text = NOTICE
    for key, value in fields.items():
        text = text.replace(f"{key}: " + ("Hello" if key == "subject" else "Hi"), f"{key}: {value}")
    return text


def template(source: str, where: str = "content") -> str:
    """A notice whose subject or content is `source` (quoted for YAML)."""
    quoted = "'" + source.replace("'", "''") + "'"
    return notice(**{where: quoted})


def _setup_huge_keys(root: Path, outside: Path) -> None:
    lines = "".join(f"k{i}: v\n" for i in range(300_000))
    (root / N).write_text(NOTICE + lines, encoding="utf-8")


def _setup_big_content(root: Path, outside: Path) -> None:
    (root / N).write_text(NOTICE.replace("content: Hi", "content: " + "a" * 3_000_000))


def _setup_outside_notice(root: Path, outside: Path) -> None:
    (outside / "good.yaml").write_text(NOTICE)
    (root / "broadcasts/notices").mkdir(parents=True, exist_ok=True)
    (root / "broadcasts/notices/linked.yaml").symlink_to(outside / "good.yaml")


def _setup_ref_link(root: Path, outside: Path) -> None:
    (root / "broadcasts/notices/leak.yaml").symlink_to("/etc/passwd")


def _setup_linked_settings(root: Path, outside: Path) -> None:
    shutil.copy(root / "commsync.yaml", outside / "c.yaml")
    (root / "commsync.yaml").unlink()
    (root / "commsync.yaml").symlink_to(outside / "c.yaml")


def _big_csv(rows: int) -> str:
    return "id,email\n" + "".join(f"{i},c{i}@example.com\n" for i in range(rows))


DEEP = "[" * 100_000 + "]" * 100_000
DEEP_JSON = "[" * 1_000 + "]" * 1_000  # within every size limit, past limits.json_depth

YAML_CASES = [
    Case(
        "billion laughs",
        r"x\.yaml:\d+:\d+: error: document too large",
        files={
            N: "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
        },
    ),
    Case(
        "deep flow nesting",
        r"x\.yaml:\d+:\d+: error: (invalid YAML|document too large)",
        files={N: "a: " + "[" * 100_000 + "]" * 100_000 + "\n"},
    ),
    Case(
        "deep block nesting",
        r"x\.yaml:\d+:\d+: error: (invalid YAML|document too large)",
        files={N: "".join(" " * i + "k:\n" for i in range(1200))},
    ),
    Case(
        "a 3 MB content string",
        r"x\.yaml:1:1: error: the file is [\d,]+ bytes, more than the limit of 1,048,576 \(limits.file_bytes\)",
        setup=_setup_big_content,
    ),
    Case(
        "300,000 keys",
        r"x\.yaml:1:1: error: the file is [\d,]+ bytes, more than the limit",
        setup=_setup_huge_keys,
    ),
    Case(
        "random binary",
        r"x\.yaml:\d+:\d+: error: file is not valid UTF-8",
        files={N: bytes(range(256)) * 8},
    ),
    Case(
        "latin-1 bytes",
        r"x\.yaml:\d+:\d+: error: file is not valid UTF-8",
        files={N: NOTICE.replace("Hi", "Caf\xe9").encode("latin-1")},
    ),
    Case(
        "UTF-16 with a BOM",
        r"x\.yaml:1:1: error: file is not valid UTF-8",
        files={N: NOTICE.encode("utf-16")},
    ),
    Case(
        "duplicate keys",
        r"x\.yaml:5:1: error: duplicate key 'subject'",
        files={N: NOTICE + "subject: Again\n"},
    ),
    Case(
        "tab indentation",
        r"x\.yaml:\d+:\d+: error: invalid YAML: tab character",
        files={N: "kind: notice\ntargets:\n\tall: true\n"},
    ),
    Case(
        "wrong types",
        r"x\.yaml:3:10: error: expected a string, got list",
        files={N: notice(subject="[1, 2]")},
    ),
    Case(
        "unknown key",
        r"x\.yaml:5:1: error: unknown key 'subjct' \(did you mean 'subject'\?\)",
        files={N: NOTICE + "subjct: x\n"},
    ),
    Case(
        "two documents",
        r"x\.yaml:\d+:1: error: one YAML document per file",
        files={N: NOTICE + "---\n" + NOTICE},
    ),
    Case("empty file", r"x\.yaml:1:1: error: file is empty", files={N: ""}),
    Case(
        "a list at the top",
        r"x\.yaml:1:1: error: expected a mapping of keys, got list",
        files={N: "- a\n- b\n"},
    ),
    Case(
        "a scalar at the top",
        r"x\.yaml:1:1: error: expected a mapping of keys, got string",
        files={N: "just text\n"},
    ),
    Case(
        "a python tag",
        r"x\.yaml:1:7: error: unsupported YAML tag",
        files={N: "kind: !!python/object/apply:os.system [touch pwned]\n"},
    ),
    Case(
        "a merge key",
        r"x\.yaml:\d+:\d+: error: merge keys \(<<\) are not supported",
        files={N: "base: &b {kind: notice}\n<<: *b\n"},
    ),
    Case(
        "a NUL byte",
        r"x\.yaml:1:\d+: error: invalid YAML: unacceptable character",
        files={N: "kind: notice\x00\n"},
    ),
    Case(
        "a 5,000-digit customer id",
        r"x\.yaml:\d+:\d+: error: a number of more than 64 digits",
        files={N: notice().replace("{all: true}", "{customers: [" + "9" * 5000 + "]}")},
    ),
    Case(
        "a control character in a subject",
        r"x\.yaml:3:10: error: subject must be plain text: it contains a control character",
        files={N: notice(subject='"Bell\\a"')},
    ),
    Case(
        "an id that climbs out",
        r"x\.yaml:\d+:\d+: error: 'a/\.\./\.\./tmp/pwn': must be",
        files={N: NOTICE + "id: a/../../tmp/pwn\n"},
    ),
    Case(
        "an id with a dot-dot part",
        r"x\.yaml:\d+:\d+: error: 'notices/\.\./x': must be",
        files={N: NOTICE + "id: notices/../x\n"},
    ),
    Case(
        "a file name with spaces",
        r"with space\.yaml:1:1: error: the file path gives the id",
        files={"broadcasts/notices/with space.yaml": NOTICE},
    ),
    Case(
        "a file name with a line break",
        r"error: the file path gives the id 'notices/new\\nline'",
        files={"broadcasts/notices/new\nline.yaml": NOTICE},
    ),
    Case(
        "a file name in Unicode",
        r"error: the file path gives the id 'notices/ünï",
        files={"broadcasts/notices/ünïcødé-通知.yaml": NOTICE},
    ),
    Case(
        "an emails file with a bad slug",
        r"Bad Slug!\.yaml:1:1: error: the file name gives the slug",
        files={"emails/Bad Slug!.yaml": "active: false\n"},
    ),
]

LINK_CASES = [
    Case(
        "a link to /etc/passwd",
        r"leak\.yaml:1:1: error: a symbolic link that leaves the repository",
        links={"broadcasts/notices/leak.yaml": "/etc/passwd"},
        forbidden=("root:x:0",),
    ),
    Case(
        "an emails link to /etc/passwd",
        r"payment_failed_customer\.yaml:1:1: error: a symbolic link that leaves",
        links={"emails/payment_failed_customer.yaml": "/etc/passwd"},
        forbidden=("root:x:0",),
    ),
    Case(
        "a link loop",
        r"loop\.yaml:1:1: error: a symbolic link that loops",
        links={"broadcasts/notices/loop.yaml": "loop.yaml"},
    ),
    Case(
        "a link to the root directory",
        r"broadcasts/notices/root:1:1: error: a symbolic link (that leaves|to a directory)",
        links={"broadcasts/notices/root": "/"},
    ),
    Case(
        "a directory link loop",
        r"broadcasts/notices/again:1:1: error: a symbolic link",
        links={"broadcasts/notices/again": "."},
    ),
    Case(
        "a link to a valid notice outside",
        r"linked\.yaml:1:1: error: a symbolic link that leaves the repository",
        setup=_setup_outside_notice,
    ),
    Case(
        "a link to /proc/self/environ",
        r"environ\.yaml:1:1: error: a symbolic link that leaves",
        links={"broadcasts/notices/environ.yaml": "/proc/self/environ"},
    ),
    Case(
        "a FIFO among broadcasts",
        r"pipe\.yaml:1:1: error: not a regular file",
        fifos=("broadcasts/notices/pipe.yaml",),
    ),
    Case(
        "a FIFO among emails", r"emails/pipe:1:1: error: not a regular file", fifos=("emails/pipe",)
    ),
    Case(
        "a device among broadcasts",
        r"zero\.yaml:1:1: error: a symbolic link that leaves",
        links={"broadcasts/notices/zero.yaml": "/dev/zero"},
    ),
    Case(
        "a layout linked outside",
        r"layouts/email\.html:1:1: error: a symbolic link that leaves",
        links={"layouts/email.html": "/etc/hostname"},
    ),
    Case(
        "commsync.yaml linked outside",
        r"commsync\.yaml:1:1: error: a symbolic link that leaves",
        setup=_setup_linked_settings,
    ),
    Case(
        "a link in a catalogs: directory",
        r"addon/emails/x\.yaml:1:1: error: a symbolic link that leaves",
        settings="catalogs: [addon]\n",
        links={"addon/emails/x.yaml": "/etc/passwd"},
        files={"addon/events/README": "catalog\n"},
    ),
    Case(
        "a committed link to /etc/passwd, at --ref",
        r"leak\.yaml:1:1: error: a symbolic link that leaves the repository",
        commands=(("validate", "--ref", "HEAD"), ("apply", "--ref", "HEAD", "--yes")),
        setup=_setup_ref_link,
        commit=True,
        forbidden=("root:x:0",),
    ),
    Case(
        "a committed link loop, at --ref",
        r"loop\.yaml:1:1: error: a symbolic link that loops",
        commands=(("validate", "--ref", "HEAD"),),
        links={"broadcasts/notices/loop.yaml": "loop.yaml"},
        commit=True,
    ),
    Case(
        "a committed link to a directory, at --ref",
        r"broadcasts/notices/up:1:1: error: a symbolic link to a directory",
        commands=(("validate", "--ref", "HEAD"), ("validate",)),
        links={"broadcasts/notices/up": "../emails"},
        commit=True,
    ),
]

TEMPLATE_CASES = [
    Case(
        "__class__ and __mro__",
        r"x\.yaml:\d+:\d+: error: the template sandbox refuses access to '__class__'",
        files={N: template("{{ ''.__class__.__mro__ }}")},
    ),
    Case(
        "cycler from the globals",
        r"x\.yaml:\d+:\d+: error: unknown placeholder 'cycler'",
        files={N: template("{{ cycler.__init__.__globals__ }}")},
    ),
    Case(
        "range",
        r"x\.yaml:\d+:\d+: error: unknown placeholder 'range'",
        files={N: template("{{ range(10)|list }}")},
    ),
    Case(
        "a loop over range",
        r"x\.yaml:\d+:\d+: error: unknown placeholder 'range'",
        files={N: template("{% for i in range(10**9) %}x{% endfor %}")},
    ),
    Case(
        "a string times a billion",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a repetition would be 1,000,000,000",
        files={N: template("{{ 'a' * 10**9 }}")},
    ),
    Case(
        "a tower of powers",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: the number of digits of a power",
        files={N: template("{{ 9 ** (9 ** (9 ** 9)) }}")},
    ),
    Case(
        "a recursive macro",
        r"x\.yaml:\d+:\d+: error: this template fails when rendered with sample values: RecursionError",
        files={N: template("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}")},
    ),
    Case(
        "include",
        r"x\.yaml:\d+:\d+: error: templates cannot include, import or extend others",
        files={N: template("{% include '/etc/passwd' %}")},
    ),
    Case(
        "import",
        r"x\.yaml:\d+:\d+: error: templates cannot include, import or extend others",
        files={N: template("{% import 'os' as os %}")},
    ),
    Case(
        "attr() around the sandbox",
        r"x\.yaml:\d+:\d+: error: the template sandbox refuses this",
        files={N: template("{{ ''|attr('__class__') }}")},
    ),
    Case(
        "a format string reaching __class__",
        r"x\.yaml:\d+:\d+: error: the template sandbox refuses this",
        files={N: template("{{ '{0.__class__}'.format('') }}")},
    ),
    Case(
        "lipsum",
        r"x\.yaml:\d+:\d+: error: unknown placeholder 'lipsum'",
        files={N: template("{{ self._TemplateReference__context }}{{ lipsum }}")},
    ),
    Case(
        "a loop in a loop of 100,000",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: loop iterations",
        files={
            N: template(
                "{% for i in 'x'*100000 %}{% for j in 'x'*100000 %}{% endfor %}{% endfor %}"
            )
        },
    ),
    Case(
        "a subject of a hundred million",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a repetition",
        files={N: template("{{ 'A' * 100000000 }}", "subject")},
    ),
    Case(
        "a placeholder times a hundred million",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a repetition",
        files={N: template("{{ customer_first_name * 100000000 }}")},
    ),
    Case(
        "a loop that writes gigabytes",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: the rendered text",
        files={N: template("{% for i in 'x'*10000 %}{{ 'y'*100000 }}{% endfor %}")},
    ),
    Case(
        "center to a billion",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a padded string",
        files={N: template("{{ customer_name|center(1000000000) }}")},
    ),
    Case(
        "ljust to a billion",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a padded string",
        files={N: template("{{ customer_name.ljust(1000000000) }}")},
    ),
    Case(
        "replace that explodes",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a string after replace",
        files={N: template("{{ ('a'*10000)|replace('a', 'b'*10000) }}")},
    ),
    Case(
        "join that explodes",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a joined string",
        files={N: template("{{ ('x'*100000)|list|join('y'*100000) }}")},
    ),
    Case(
        "concatenations that double",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a concatenation",
        files={N: template("{% set s = 'ab' %}" + "{% set s = s ~ s %}" * 40 + "{{ s }}")},
    ),
    Case(
        "a printf width of a billion",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a width",
        files={N: template("{{ '%999999999s' % 'a' }}")},
    ),
    Case(
        "a format width of a billion",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a width",
        files={N: template("{{ '{:>999999999}'.format('a') }}")},
    ),
    Case(
        "indent by a billion",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: an indented string",
        files={N: template("{{ 'x'|indent(width=1000000000) }}")},
    ),
    Case(
        "a literal subject of 2,000 characters",
        r"x\.yaml:3:10: error: too long: 2,000 characters, at most 998",
        files={N: notice(subject="A" * 2000)},
    ),
    Case(
        "a rendered subject past subject_chars",
        r"x\.yaml:\d+:\d+: error: rendered with sample values it is 1,500 characters",
        files={N: template("{{ 'A' * 1500 }}", "subject")},
    ),
    Case(
        "a layout that repeats a billion times",
        r"layouts/email\.html:\d+:\d+: error: this template goes past its limits with sample values",
        files={"layouts/email.html": "{{ content }}{{ 'x' * 10**9 }}"},
    ),
    Case(
        "a layout loop in a loop",
        r"layouts/email\.html:\d+:\d+: error: this template goes past its limits",
        files={
            "layouts/email.html": "{{ content }}{% for i in 'x'*50000 %}{% for j in 'x'*50000 %}{% endfor %}{% endfor %}"
        },
    ),
    Case(
        "a system email content past its budget",
        r"payment_failed_admin\.yaml:\d+:\d+: error: this template goes past its limits with sample values",
        files={E: 'content: "{{ customer_name * 100000000 }}"\n'},
    ),
    Case(
        "a lower template budget in commsync.yaml",
        r"x\.yaml:\d+:\d+: error: this template goes past its limits with sample values: a repetition would be 5,000",
        settings="limits: {template_result: 1000}\n",
        files={N: template("{{ 'a' * 5000 }}")},
    ),
    Case(
        "a template of a 5,000-digit number",
        r"x\.yaml:\d+:\d+: error: template syntax error",
        files={N: template("{{ " + "9" * 5000 + " }}")},
    ),
]

HEADER_CASES = [
    Case(
        "CR LF in a subject",
        r"x\.yaml:3:10: error: subject must be one line",
        files={N: notice(subject='"Hi\\r\\nBcc: evil@evil.example"')},
    ),
    Case(
        "CR LF in mail.from",
        r"commsync\.yaml:\d+:\d+: error: .* is not a mailbox",
        setup=lambda root, outside: _replace(
            root,
            "from: Acme Sites <hello@acme.example>",
            'from: "Acme\\r\\nBcc: evil@evil.example <hello@acme.example>"',
        ),
    ),
    Case(
        "CR LF in mail.reply_to",
        r"commsync\.yaml:\d+:\d+: error: .* is not an email address",
        setup=lambda root, outside: _replace(
            root,
            "reply_to: support@acme.example",
            'reply_to: "support@acme.example\\r\\nBcc: x@evil.example"',
        ),
    ),
    Case(
        "CR LF in mail.admins",
        r"commsync\.yaml:\d+:\d+: error: .* is not an email address",
        setup=lambda root, outside: _replace(
            root, "- ops@acme.example", '- "ops@acme.example\\nBcc: x@evil.example"'
        ),
    ),
    Case(
        "CR LF in a sender name",
        r"payment_failed_admin\.yaml:\d+:\d+: error: sender name must be one line",
        files={E: 'sender: {name: "Ops\\r\\nBcc: x@evil.example", email: ops@acme.example}\n'},
    ),
    Case(
        "a bad sender address",
        r"payment_failed_admin\.yaml:\d+:\d+: error: 'ops@acme\.example, x@evil\.example' is not an email address",
        files={E: "sender: {name: Ops, email: 'ops@acme.example, x@evil.example'}\n"},
    ),
]


def _replace(root: Path, old: str, new: str) -> None:
    path = root / "commsync.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


SETTINGS_CASES = [
    Case(
        "a password in store:",
        r"commsync\.yaml:\d+:\d+: error: a password in the URL would end up in git",
        commands=(("validate",),),
        setup=lambda root, outside: _replace(
            root, "store: sqlite:///.commsync/store.db", "store: postgresql://u:hunter2@127.0.0.1/x"
        ),
        forbidden=("hunter2",),
    ),
    Case(
        "a store that is not a database",
        r"error: cannot open the store sqlite:////etc/passwd: file is not a database",
        commands=(("validate",), ("plan",)),
        env={"COMMSYNC_STORE": "sqlite:////etc/passwd"},
    ),
    Case(
        "a store in a directory that cannot be",
        r"error: cannot (create the store's directory|open the store)",
        commands=(("plan",),),
        env={"COMMSYNC_STORE": "sqlite:////proc/self/x/store.db"},
    ),
    Case(
        "catalogs: climbing out",
        r"commsync\.yaml:\d+:\d+: error: catalog directory '\.\./\.\./\.\./\.\./etc' is outside the repository",
        commands=(("validate",), ("plan",)),
        settings="catalogs: ['../../../../etc', '/etc']\n",
    ),
    Case(
        "catalogs: an absolute path",
        r"commsync\.yaml:\d+:\d+: error: catalog directory '/etc' is outside the repository",
        commands=(("validate",),),
        settings="catalogs: ['/etc']\n",
    ),
    Case(
        "a password in COMMSYNC_SMTP_URL",
        r"error: the mail transport URL holds a password",
        commands=(APPLY,),
        env={"COMMSYNC_SMTP_URL": "smtp://user:SUPERSECRET3@127.0.0.1:1"},
        files={
            "broadcasts/emails/x.yaml": "kind: email\ntargets: {all: true}\nsubject: S\ncontent: C\n"
        },
        forbidden=("SUPERSECRET3",),
    ),
    Case(
        "credentials over plain SMTP to a remote host",
        r"error: refusing to send the SMTP credentials unencrypted to mail\.example",
        commands=(("test-send", "payment_received_customer", "--to", "you@example.com"),),
        env={
            "COMMSYNC_SMTP_URL": "smtp://mail.example:25",
            "COMMSYNC_SMTP_USERNAME": "u",
            "COMMSYNC_SMTP_PASSWORD": "SUPERSECRET5",
        },
        forbidden=("SUPERSECRET5",),
    ),
    Case(
        "a store password in COMMSYNC_STORE is never printed",
        r"error: cannot open the store postgresql\+?\w*://u:\*\*\*@127\.0\.0\.1:1/x",
        commands=(("plan",),),
        env={"COMMSYNC_STORE": "postgresql://u:SUPERSECRET4@127.0.0.1:1/x"},
        forbidden=("SUPERSECRET4",),
    ),
    Case(
        "a limit below its minimum",
        r"commsync\.yaml:\d+:\d+: error: .*1024",
        commands=(("validate",),),
        settings="limits: {file_bytes: 1}\n",
    ),
    Case(
        "an unknown limit",
        r"commsync\.yaml:\d+:\d+: error: unknown key 'seconds'",
        commands=(("validate",),),
        settings="limits: {seconds: 5}\n",
    ),
    Case(
        "a lower file limit",
        r"x\.yaml:1:1: error: the file is [\d,]+ bytes, more than the limit of 2,000",
        settings="limits: {file_bytes: 2000}\n",
        files={N: NOTICE.replace("content: Hi", "content: " + "a" * 3000)},
    ),
]

GIT_CASES = [
    Case(
        "--ref an option",
        r"error: unknown git reference '(--upload-pack=touch pwned|--output=pwned)'",
        commands=(
            ("validate", "--ref", "--upload-pack=touch pwned"),
            ("plan", "--ref", "--upload-pack=touch pwned"),
            ("apply", "--yes", "--ref", "--output=pwned"),
        ),
    ),
    Case(
        "--ref a shell command",
        r"error: unknown git reference '(HEAD; touch pwned|\$\(touch pwned\))'",
        commands=(("validate", "--ref", "HEAD; touch pwned"), ("plan", "--ref", "$(touch pwned)")),
    ),
    Case(
        "--changed-since an option",
        r"error: unknown git reference '(--output=pwned|-p)'",
        commands=(("plan", "--changed-since", "--output=pwned"), ("plan", "--changed-since", "-p")),
    ),
    Case(
        "--ref beyond history",
        r"error: unknown git reference '(HEAD~1000|--exec=touch pwned)'",
        commands=(("validate", "--ref", "HEAD~1000"), ("drift", "--ref", "--exec=touch pwned")),
    ),
    Case(
        "--ref forty x",
        r"error: unknown git reference 'x{40}'",
        commands=(("validate", "--ref", "x" * 40),),
    ),
]

DIRECTORY_CASES = [
    Case(
        "-C a missing directory",
        r"error: no commsync\.yaml in /nonexistent",
        commands=(("-C", "/nonexistent", "validate"),),
    ),
    Case("-C /etc", r"error: no commsync\.yaml in /etc", commands=(("-C", "/etc", "validate"),)),
    Case(
        "-C /proc/self",
        r"error: no commsync\.yaml in /proc/",
        commands=(("-C", "/proc/self", "plan"),),
    ),
    Case(
        "-C /dev/null",
        r"error: no commsync\.yaml in /dev/null",
        commands=(("-C", "/dev/null", "status"),),
    ),
]

ARGUMENT_CASES = [
    Case(
        "emails import climbing out",
        r"error: unknown registered default\(s\) (\.\./\.\./\.\./tmp/pwned|payment_received_admin/\.\./\.\./x)",
        commands=(
            ("emails", "import", "../../../tmp/pwned"),
            ("emails", "import", "payment_received_admin/../../x"),
        ),
    ),
    Case(
        "emails reset /etc/passwd",
        r"error: unknown system email\(s\) \.\./\.\./etc/passwd",
        commands=(("emails", "reset", "../../etc/passwd"),),
    ),
    Case(
        "preview /etc/passwd",
        r"error: /etc/passwd: not a broadcast or system email file of this repository",
        commands=(("preview", "/etc/passwd", "--out", "pv"),),
    ),
    Case(
        "preview a path climbing out",
        r"error: \.\./\.\./\.\./\.\./etc/hostname: not a broadcast",
        commands=(("preview", "../../../../etc/hostname", "--out", "pv"),),
    ),
    Case(
        "preview into /proc",
        r"error: cannot write into /proc/self/x",
        commands=(("preview", "broadcasts/notices/card-expiring.yaml", "--out", "/proc/self/x"),),
    ),
    Case(
        "preview --data not JSON",
        r"error: --data is not valid JSON",
        commands=(
            ("preview", "emails/payment_received_customer.yaml", "--data", "{oops", "--out", "pv"),
        ),
    ),
    Case(
        "preview --data nested 1,000 deep",
        r"error: --data is not valid JSON: nested deeper than 32 levels",
        commands=(
            (
                "preview",
                "emails/payment_received_customer.yaml",
                "--data",
                '{"a": ' + DEEP_JSON + "}",
                "--out",
                "pv",
            ),
        ),
    ),
    Case(
        "token SQL",
        r"error: customer \"' OR '1'='1\" matches no customer",
        commands=(("token", "' OR '1'='1"),),
    ),
    Case(
        "token --ttl past int",
        r"error: invalid --ttl '99999999999999999999d': between one minute and ten years",
        commands=(("token", "1001", "--ttl", "99999999999999999999d"),),
    ),
    Case(
        "token --ttl zero",
        r"error: invalid --ttl '0m': between one minute and ten years",
        commands=(("token", "1001", "--ttl", "0m"),),
    ),
    Case(
        "token --ttl words",
        r"error: invalid --ttl 'forever': write it like 30d",
        commands=(("token", "1001", "--ttl", "forever"),),
    ),
    Case(
        "unlock SQL",
        r"error: no lock \"'; DROP TABLE customers; --\": nobody holds the lock",
        commands=(("unlock", "'; DROP TABLE customers; --"),),
    ),
    Case(
        "status --failed SQL",
        r"error: no email broadcast \"x' OR 1=1 --\" has been sent",
        commands=(("status", "--failed", "x' OR 1=1 --"),),
    ),
]

EVENT_CASES = [
    Case(
        "event data not JSON",
        r"<stdin>:1:2: error: not valid JSON",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=b"{oops",
    ),
    Case(
        "event data nested 1,000 deep",
        r"<stdin>:1:\d+: error: nested deeper than 32 levels \(limits\.json_depth\)",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=('{"a": ' + DEEP_JSON + "}").encode(),
    ),
    Case(
        "event data nested 100,000 deep",
        r"<stdin>:1:1: error: the payload is [\d,]+ bytes or more, more than the limit of 65,536",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=('{"a": ' + DEEP + "}").encode(),
    ),
    Case(
        "event data of 2 MB",
        r"<stdin>:1:1: error: the payload is [\d,]+ bytes or more, more than the limit of 65,536",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=b'{"customer_name": "' + b"a" * 2_000_000 + b'"}',
    ),
    Case(
        "event data from /dev/zero",
        r"error: /dev/zero: cannot read: not a regular file",
        commands=(("event", "payment_received", "--data", "/dev/zero"),),
    ),
    Case(
        "event data from a missing file",
        r"error: nope\.json: cannot read: No such file",
        commands=(("event", "payment_received", "--data", "nope.json"),),
    ),
    Case(
        "event data not UTF-8",
        r"<stdin>:1:1: error: not UTF-8 text",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=b'{"a": "\xff\xfe"}',
    ),
    Case(
        "event data a list",
        r"<stdin>:1:1: error: the payload must be a JSON object",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=b"[1, 2]",
    ),
    Case(
        "an event type climbing out",
        r"error: unknown event '\.\./\.\./etc'",
        commands=(("event", "../../etc", "--data", "-"),),
        stdin=b"{}",
    ),
    Case(
        "a customer name with a header",
        r"error: customer_name must be one line",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=b'{"customer_name": "Ada\\r\\nBcc: evil@evil.example", "customer_user_email": "ada@example.com", "payment_total": "$1", "payment_reference_code": "P", "payment_invoice_url": "https://x"}',
    ),
    Case(
        "a customer address with a header",
        r"error: customer_user_email must be one email address",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=b'{"customer_name": "Ada", "customer_user_email": "ada@example.com\\r\\nBcc: evil@evil.example"}',
    ),
    Case(
        "two customer addresses",
        r"error: customer_user_email must be one email address",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=b'{"customer_name": "Ada", "customer_user_email": "ada@example.com, eve@evil.example"}',
    ),
    Case(
        "a payload number past int",
        r"<stdin>:1:1: error: not valid JSON: Exceeds the limit",
        commands=(("event", "payment_received", "--data", "-"),),
        stdin=b'{"payment_id": ' + b"9" * 5000 + b"}",
    ),
    Case(
        "test-send data nested deep",
        r"<stdin>:1:\d+: error: nested deeper than 32 levels",
        commands=(
            ("test-send", "payment_received_customer", "--to", "you@example.com", "--data", "-"),
        ),
        stdin=('{"a": ' + DEEP_JSON + "}").encode(),
    ),
    Case(
        "test-send to a header",
        r"error: 'you@example\.com\\r\\nBcc: x@evil\.example' is not an email address",
        commands=(
            (
                "test-send",
                "payment_received_customer",
                "--to",
                "you@example.com\r\nBcc: x@evil.example",
            ),
        ),
    ),
]

DATA = "data/x.csv"
IMPORT = ("customers", "import", DATA)
DATA_CASES = [
    Case(
        "CSV in latin-1",
        r"data/x\.csv:2: error: file is not valid UTF-8",
        commands=(IMPORT,),
        files={DATA: "id,email,first_name\n7001,a@example.com,Jos\xe9\n".encode("latin-1")},
    ),
    Case(
        "CSV without the email column",
        r"data/x\.csv:1: error: header lacks column\(s\) email",
        commands=(IMPORT,),
        files={DATA: "id,username\n7001,bob\n"},
    ),
    Case(
        "a CSV line of 1 MB",
        r"data/x\.csv:2: error: a line longer than 65,536 bytes \(limits\.row_bytes\)",
        commands=(IMPORT,),
        files={DATA: "id,email,first_name\n7001,a@example.com," + "a" * 1_000_000 + "\n"},
    ),
    Case(
        "a quoted CSV field over many lines",
        r"data/x\.csv:2: error: unreadable CSV: field larger than field limit",
        commands=(IMPORT,),
        files={
            DATA: 'id,email,first_name\n7001,a@example.com,"' + ("a" * 60_000 + "\n") * 4 + '"\n'
        },
    ),
    Case(
        "CSV duplicate ids",
        r"data/x\.csv:3: error: duplicate row for 7001 \(first on line 2\)",
        commands=(IMPORT,),
        files={DATA: "id,email\n7001,a@example.com\n7001,b@example.com\n"},
    ),
    Case(
        "JSONL nested 1,000 deep",
        r"data/x\.jsonl:1: error: invalid JSON: nested deeper than 32 levels",
        commands=(("customers", "import", "data/x.jsonl"),),
        files={"data/x.jsonl": DEEP_JSON + "\n"},
    ),
    Case(
        "JSONL nested 100,000 deep",
        r"data/x\.jsonl:1: error: a line longer than 65,536 bytes",
        commands=(("customers", "import", "data/x.jsonl"),),
        files={"data/x.jsonl": DEEP + "\n"},
    ),
    Case(
        "JSONL a number past int",
        r"data/x\.jsonl:1: error: invalid JSON: Exceeds the limit",
        commands=(("customers", "import", "data/x.jsonl"),),
        files={"data/x.jsonl": '{"id": ' + "9" * 5000 + ', "email": "a@example.com"}\n'},
    ),
    Case(
        "a JSONL line of 1 MB",
        r"data/x\.jsonl:1: error: a line longer than 65,536 bytes",
        commands=(("customers", "import", "data/x.jsonl"),),
        files={"data/x.jsonl": '{"id": "1", "email": "' + "a" * 1_000_000 + '@x.example"}\n'},
    ),
    Case(
        "CSV with a NUL byte",
        r"data/x\.csv:2: error: (first_name must be one line|unreadable CSV)",
        commands=(IMPORT,),
        files={DATA: "id,email,first_name\n7001,a@example.com,A\x00B\n"},
    ),
    Case(
        "a status in French",
        r"data/x\.csv:2: error: status 'état' is not a valid status",
        commands=(("memberships", "import", DATA),),
        files={DATA: "customer_id,product,status\n1001,pro,état\n"},
    ),
    Case(
        "a header and no rows",
        r"data/x\.csv:1: error: no rows to import",
        commands=(IMPORT,),
        files={DATA: "id,email\n"},
    ),
    Case(
        "an empty data file",
        r"data/x\.csv:1: error: header lacks column\(s\) id, email",
        commands=(IMPORT,),
        files={DATA: ""},
    ),
    Case(
        "a data file that is not there",
        r"error: cannot read data/nope\.csv: No such file",
        commands=(("customers", "import", "data/nope.csv"),),
    ),
    Case(
        "/dev/zero as a data file",
        r"error: cannot read /dev/zero: not a regular file",
        commands=(("customers", "import", "/dev/zero"),),
    ),
    Case(
        "a data file that is a directory",
        r"error: cannot read data: (Is a directory|not a regular file)",
        commands=(("customers", "import", "data"),),
    ),
    Case(
        "CSV addresses that are not",
        r"data/x\.csv:2: error: email 'not-an-email' is not an email address",
        commands=(IMPORT,),
        files={DATA: "id,email\n7001,not-an-email\n"},
    ),
    Case(
        "CSV header injection in a name",
        r"data/x\.csv:2: error: first_name must be one line",
        commands=(IMPORT,),
        files={DATA: 'id,email,first_name\n7001,a@example.com,"Ann\nBcc: x@evil.example"\n'},
    ),
    Case(
        "CSV an id of 5,000 digits",
        r"data/x\.csv:2: error: id is longer than 255 characters",
        commands=(IMPORT,),
        files={DATA: "id,email\n" + "9" * 5000 + ",a@example.com\n"},
    ),
    Case(
        "memberships of unknown customers",
        r"data/x\.csv:2: error: unknown customer '999999'",
        commands=(("memberships", "import", DATA),),
        files={DATA: "customer_id,product,status\n999999,pro,active\n"},
    ),
    Case(
        "JSONL a list per line",
        r"data/x\.jsonl:1: error: each line must be a JSON object",
        commands=(("customers", "import", "data/x.jsonl"),),
        files={"data/x.jsonl": '["1", "a@example.com"]\n'},
    ),
    Case(
        "a CSV line past a lower row limit",
        r"data/x\.csv:2: error: a line longer than 300 bytes",
        settings="limits: {row_bytes: 300}\n",
        commands=(IMPORT,),
        files={DATA: "id,email,first_name\n7001,a@example.com," + "a" * 400 + "\n"},
    ),
]

CASES = [
    *YAML_CASES,
    *LINK_CASES,
    *TEMPLATE_CASES,
    *HEADER_CASES,
    *SETTINGS_CASES,
    *GIT_CASES,
    *DIRECTORY_CASES,
    *ARGUMENT_CASES,
    *EVENT_CASES,
    *DATA_CASES,
]
IDS = [c.name for c in CASES]


def test_the_corpus_is_large_and_its_names_unique() -> None:
    assert len(CASES) >= 100
    assert len(set(IDS)) == len(IDS)


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo, applied once: the store and the outbox hold data every case must leave alone."""
    root = tmp_path_factory.mktemp("hostile") / "demo"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("ci", ".commsync"))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    repo = Repo(root)
    repo.commit_all("examples")
    repo.import_data(EXAMPLES / "data")
    assert repo.cli("apply", "--yes").exit_code == 0
    return root


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest, template_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Result]]]:
    """Every selected case, run two at a time (the cases are independent)."""
    wanted = {
        item.callspec.id
        for item in request.session.items
        if item.path == request.path and hasattr(item, "callspec")
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            case.name: pool.submit(run_case, case, template_repo, tmp_path_factory.mktemp("case"))
            for case in CASES
            if case.name in wanted
        }


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hostile_input_is_refused_clearly_and_changes_nothing(
    case: Case, results: dict[str, Future[Result]]
) -> None:
    assert problems(case, results[case.name].result()) == []


def test_a_file_read_whole_even_when_it_grew_after_its_size_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file is read by the size its lstat gave, plus one byte to notice growth; one that grew
    in between (a race no test can time, so lstat is made to answer early) is read on, up to the
    limit, and refused past it."""
    import os
    from collections import namedtuple

    from commsync.config.files import DirectoryTree, UnreadableFile

    (tmp_path / "grew.yaml").write_bytes(b"a: 1\n" * 100)
    real_lstat = Path.lstat
    Stat = namedtuple("Stat", "st_mode st_size")

    def early(self: Path) -> object:
        info = real_lstat(self)
        return Stat(info.st_mode, 10) if self.name == "grew.yaml" else info

    monkeypatch.setattr(Path, "lstat", early)
    tree = DirectoryTree(tmp_path)
    assert tree.read("grew.yaml") == b"a: 1\n" * 100  # all 500 bytes, not the 10 lstat gave
    with pytest.raises(UnreadableFile, match="is 101 bytes, more than the limit of 100 "):
        tree.read("grew.yaml", max_bytes=100)
    assert os.path.getsize(tmp_path / "grew.yaml") == 500
