"""The bad-input corpus: every case gives its path:line:col diagnostics, exit 1, and no change.

Each case writes files into a repository whose store holds customers 1-5 (ada, grace, aturing,
kjohnson, linus) and products pro, starter, agency; then both `validate` and `plan` must report
exactly the expected diagnostics and leave the store byte-for-byte as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tests.helpers import SETTINGS, Repo, dump_store

NOTICE = """\
kind: notice
targets:
  all: true
subject: Hello
content: Hi there
"""


@dataclass(frozen=True)
class Case:
    name: str
    files: dict[str, str]
    expected: list[str]
    extra: dict[str, str] = field(default_factory=dict)


CASES = [
    Case(
        "malformed YAML",
        {"broadcasts/a.yaml": "kind: notice\nsubject: [unclosed\ncontent: x\n"},
        ["broadcasts/a.yaml:3:8: error: invalid YAML"],
    ),
    Case(
        "tab indentation",
        {"broadcasts/a.yaml": "kind: notice\ntargets:\n\tall: true\n"},
        ["broadcasts/a.yaml:3:1: error: invalid YAML: tab character"],
    ),
    Case(
        "duplicate key",
        {"broadcasts/a.yaml": NOTICE + "kind: email\n"},
        ["broadcasts/a.yaml:6:1: error: duplicate key 'kind' (first defined on line 1)"],
    ),
    Case(
        "wrong type: yes is not a boolean",
        {"broadcasts/a.yaml": NOTICE + "dismissible: yes\n"},
        ["broadcasts/a.yaml:6:14: error: expected true or false, got string 'yes'"],
    ),
    Case(
        "wrong type: list for subject",
        {"broadcasts/a.yaml": NOTICE.replace("subject: Hello", "subject: [Hello]")},
        ["broadcasts/a.yaml:4:10: error: expected a string, got list"],
    ),
    Case(
        "unknown key",
        {"broadcasts/a.yaml": NOTICE + "colour: red\n"},
        ["broadcasts/a.yaml:6:1: error: unknown key 'colour' (expected one of: "],
    ),
    Case(
        "unknown key with a suggestion",
        {"broadcasts/a.yaml": NOTICE + "dismissable: false\n"},
        ["broadcasts/a.yaml:6:1: error: unknown key 'dismissable' (did you mean 'dismissible'?)"],
    ),
    Case(
        "unknown key inside targets",
        {"broadcasts/a.yaml": NOTICE.replace("  all: true", "  all: true\n  produts: [pro]")},
        ["broadcasts/a.yaml:4:3: error: unknown key 'produts' (did you mean 'products'?)"],
    ),
    Case(
        "bad enum: message_type",
        {"broadcasts/a.yaml": NOTICE + "message_type: urgent\n"},
        ["broadcasts/a.yaml:6:15: error: 'urgent' is not one of: info, success, warning, error"],
    ),
    Case(
        "bad enum: kind",
        {"broadcasts/a.yaml": NOTICE.replace("kind: notice", "kind: banner")},
        ["broadcasts/a.yaml:1:7: error: 'banner' is not one of: notice, email"],
    ),
    Case(
        "missing required key",
        {"broadcasts/a.yaml": "kind: notice\ntargets: {all: true}\nsubject: Hi\n"},
        ["broadcasts/a.yaml:1:1: error: missing required key 'content'"],
    ),
    Case(
        "date without offset",
        {"broadcasts/a.yaml": NOTICE + "starts_at: 2026-12-01T09:00:00\n"},
        ["broadcasts/a.yaml:6:12: error: starts_at '2026-12-01T09:00:00' has no UTC offset"],
    ),
    Case(
        "not a date",
        {"broadcasts/a.yaml": NOTICE + "expires_at: next week\n"},
        ["broadcasts/a.yaml:6:13: error: expires_at 'next week' is not an ISO 8601 date-time"],
    ),
    Case(
        "expires before starts",
        {
            "broadcasts/a.yaml": NOTICE
            + "starts_at: 2026-12-02T00:00:00Z\nexpires_at: 2026-12-01T00:00:00Z\n"
        },
        ["broadcasts/a.yaml:7:13: error: expires_at must be after starts_at"],
    ),
    Case(
        "email-only key on a notice",
        {"broadcasts/a.yaml": NOTICE + "send_at: 2026-12-01T00:00:00Z\n"},
        ["broadcasts/a.yaml:6:1: error: key 'send_at' is only for email broadcasts (kind: email)"],
    ),
    Case(
        "max_lateness is not a duration",
        {
            "broadcasts/a.yaml": NOTICE.replace("kind: notice", "kind: email")
            + "send_at: 2026-12-01T00:00:00Z\nmax_lateness: soon\n"
        },
        [
            "broadcasts/a.yaml:7:15: error: 'soon': must be a duration such as 90m, 2h, 3d or 1d12h",
        ],
    ),
    Case(
        "max_lateness on a notice",
        {"broadcasts/a.yaml": NOTICE + "max_lateness: 2h\n"},
        ["broadcasts/a.yaml:6:1: error: key 'max_lateness' is only for email broadcasts"],
    ),
    Case(
        "notice-only key on an email",
        {
            "broadcasts/a.yaml": NOTICE.replace("kind: notice", "kind: email")
            + "message_type: info\n"
        },
        ["broadcasts/a.yaml:6:1: error: key 'message_type' is only for notices (kind: notice)"],
    ),
    Case(
        "invalid id",
        {"broadcasts/a.yaml": NOTICE + "id: Bad Id\n"},
        ["broadcasts/a.yaml:6:5: error: 'Bad Id': must be 1-128 characters"],
    ),
    Case(
        "duplicate ids across files",
        {
            "broadcasts/a.yaml": NOTICE + "id: same\n",
            "broadcasts/sub/b.yaml": "id: same\n" + NOTICE,
        },
        [
            "broadcasts/a.yaml:6:1: error: duplicate broadcast id 'same' (also in broadcasts/sub/b.yaml)",
            "broadcasts/sub/b.yaml:1:1: error: duplicate broadcast id 'same' (also in broadcasts/a.yaml)",
        ],
    ),
    Case(
        "empty targets",
        {"broadcasts/a.yaml": NOTICE.replace("targets:\n  all: true", "targets: {}")},
        ["broadcasts/a.yaml:2:10: error: targets select nobody"],
    ),
    Case(
        "targets that select nobody",
        {"broadcasts/a.yaml": NOTICE.replace("  all: true", "  all: false\n  products: []")},
        ["broadcasts/a.yaml:3:3: error: targets select nobody"],
    ),
    Case(
        "unknown product",
        {"broadcasts/a.yaml": NOTICE.replace("  all: true", "  products: [pro, prro]")},
        ["broadcasts/a.yaml:3:19: error: unknown product 'prro' (did you mean 'pro'?)"],
    ),
    Case(
        "unknown customer",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "  all: true", "  customers:\n    - ada@example.com\n    - nobody@example.com"
            )
        },
        ["broadcasts/a.yaml:5:7: error: unknown customer 'nobody@example.com'"],
    ),
    Case(
        "unknown placeholder in a block",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "content: Hi there", "content: |\n  Hello\n  Dear {{ custmer_name }},\n"
            )
        },
        [
            "broadcasts/a.yaml:7:11: error: unknown placeholder 'custmer_name' for notices (did you mean 'customer_name'?)"
        ],
    ),
    Case(
        "unknown placeholder in a subject",
        {"broadcasts/a.yaml": NOTICE.replace("subject: Hello", "subject: Hello {{ site_title }}")},
        ["broadcasts/a.yaml:4:19: error: unknown placeholder 'site_title' for notices"],
    ),
    Case(
        "unsubscribe_url is for emails only",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "content: Hi there", 'content: "{{ unsubscribe_url }}"'
            )
        },
        ["broadcasts/a.yaml:5:14: error: unknown placeholder 'unsubscribe_url' for notices"],
    ),
    Case(
        "Jinja2 syntax error at its own line",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "content: Hi there", "content: |\n  one\n  two\n  {% if customer_name %}\n"
            )
        },
        ["broadcasts/a.yaml:8:3: error: template syntax error: Unexpected end of template"],
    ),
    Case(
        "sandbox escape: __class__",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "content: Hi there", "content: \"{{ ''.__class__ }}\""
            )
        },
        ["broadcasts/a.yaml:5:17: error: the template sandbox refuses access to '__class__'"],
    ),
    Case(
        "sandbox escape through a placeholder",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "content: Hi there",
                "content: |\n  {{ customer_name.__class__.__mro__[1].__subclasses__() }}\n",
            )
        },
        [
            "broadcasts/a.yaml:6:20: error: the template sandbox refuses access to '__class__'",
            "broadcasts/a.yaml:6:30: error: the template sandbox refuses access to '__mro__'",
            "broadcasts/a.yaml:6:41: error: the template sandbox refuses access to '__subclasses__'",
        ],
    ),
    Case(
        "template include",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "content: Hi there", "content: \"{% include '/etc/passwd' %}\""
            )
        },
        ["broadcasts/a.yaml:5:11: error: templates cannot include, import or extend others"],
    ),
    Case(
        "unknown filter",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "content: Hi there", 'content: "{{ customer_name | shout }}"'
            )
        },
        ["broadcasts/a.yaml:5:30: error: unknown filter 'shout'"],
    ),
    Case(
        "CR/LF in a subject",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "subject: Hello", 'subject: "Hi\\r\\nBcc: all@example.com"'
            )
        },
        ["broadcasts/a.yaml:4:10: error: subject must be one line: it contains a CR or LF"],
    ),
    Case(
        "block subject ends with a newline",
        {"broadcasts/a.yaml": NOTICE.replace("subject: Hello", "subject: |\n  Hello")},
        [
            "broadcasts/a.yaml:4:10: error: subject must be one line: it contains a CR or LF (a | or > block"
        ],
    ),
    Case("empty file", {"broadcasts/a.yaml": ""}, ["broadcasts/a.yaml:1:1: error: file is empty"]),
    Case(
        "two documents in one file",
        {"broadcasts/a.yaml": NOTICE + "---\n" + NOTICE},
        ["broadcasts/a.yaml:7:1: error: one YAML document per file"],
    ),
    Case(
        "not UTF-8",
        {"broadcasts/a.yaml": NOTICE.replace("Hi there", "Hi th\udcffere")},
        ["broadcasts/a.yaml:5:15: error: file is not valid UTF-8"],
    ),
    Case(
        "python object tag",
        {"broadcasts/a.yaml": NOTICE + "id: !!python/object:os.system x\n"},
        [
            "broadcasts/a.yaml:6:5: error: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'"
        ],
    ),
    Case(
        "alias bomb",
        {
            "broadcasts/a.yaml": "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        },
        ["broadcasts/a.yaml:", "error: document too large or too deeply nested"],
    ),
    Case(
        "system email: unknown event",
        {
            "emails/welcome.yaml": "event: signed_up\ntarget: customer\nsubject: Hi\ncontent: Hello\n"
        },
        ["emails/welcome.yaml:1:8: error: unknown event 'signed_up'"],
    ),
    Case(
        "system email: custom without required keys",
        {"emails/welcome.yaml": "subject: Hi\n"},
        [
            "emails/welcome.yaml:1:1: error: missing required key 'event': 'welcome' is not a registered default",
            "emails/welcome.yaml:1:1: error: missing required key 'target'",
            "emails/welcome.yaml:1:1: error: missing required key 'content'",
        ],
    ),
    Case(
        "system email: placeholder the event lacks",
        {
            "emails/payment_received_customer.yaml": "content: |\n  Paid {{ payment_total }}\n  for {{ site_title }}\n"
        },
        [
            "emails/payment_received_customer.yaml:3:10: error: unknown placeholder 'site_title' for event payment_received"
        ],
    ),
    Case(
        "system email: bad delay",
        {"emails/payment_received_customer.yaml": "delay: soon\n"},
        ["emails/payment_received_customer.yaml:1:8: error: 'soon': must be 0 or a duration"],
    ),
    Case(
        "system email: header injection in sender",
        {
            "emails/payment_received_customer.yaml": 'sender:\n  name: "Acme\\r\\nBcc: x@evil.example"\n  email: billing@acme.example\n'
        },
        ["emails/payment_received_customer.yaml:2:9: error: sender name must be one line"],
    ),
    Case(
        "system email: bad sender address",
        {"emails/payment_received_customer.yaml": "sender: {email: not-an-address}\n"},
        [
            "emails/payment_received_customer.yaml:1:17: error: 'not-an-address' is not an email address"
        ],
    ),
    Case(
        "system email: unknown key",
        {"emails/payment_received_customer.yaml": "actve: false\n"},
        [
            "emails/payment_received_customer.yaml:1:1: error: unknown key 'actve' (did you mean 'active'?)"
        ],
    ),
    Case(
        "system email: event moved away from the default's placeholders",
        {"emails/payment_received_customer.yaml": "event: site_published\n"},
        [
            "emails/payment_received_customer.yaml:1:8: error: the default subject uses payment_product_names, payment_total, which event site_published does not provide",
            "emails/payment_received_customer.yaml:1:8: error: the default content uses payment_date_created, payment_invoice_url",
        ],
    ),
    Case(
        "system email: duplicate slug",
        {
            "emails/a.yaml": "email: payment_received_customer\n",
            "emails/b.yaml": "email: payment_received_customer\nactive: false\n",
        },
        [
            "emails/a.yaml:1:1: error: duplicate system email 'payment_received_customer' (also in emails/b.yaml)",
            "emails/b.yaml:1:1: error: duplicate system email 'payment_received_customer' (also in emails/a.yaml)",
        ],
    ),
    Case(
        "settings: wrong version",
        {},
        ["commsync.yaml:1:10: error: version must be 1"],
        extra={"commsync.yaml": SETTINGS.replace("version: 1", "version: 2")},
    ),
    Case(
        "settings: unknown key",
        {},
        ["commsync.yaml:8:1: error: unknown key 'imprts' (did you mean 'imports'?)"],
        extra={"commsync.yaml": SETTINGS + "imprts: all\n"},
    ),
    Case(
        "settings: header injection in mail.from",
        {},
        [
            "commsync.yaml:6:9: error: 'Acme <a@acme.example>\\nBcc: x@evil.example' is not a mailbox"
        ],
        extra={
            "commsync.yaml": SETTINGS.replace(
                "from: Acme Sites <hello@acme.example>",
                'from: "Acme <a@acme.example>\\nBcc: x@evil.example"',
            )
        },
    ),
    Case(
        "settings: password in the SMTP URL",
        {},
        ["commsync.yaml:8:14: error: a password in the URL would end up in git"],
        extra={
            "commsync.yaml": SETTINGS + "  transport: smtp://user:secret@smtp.acme.example:587\n"
        },
    ),
    Case(
        "settings: mail.delivery is apply or workers",
        {},
        ["commsync.yaml:8:13: error: 'sometimes' is not one of: apply, workers"],
        extra={"commsync.yaml": SETTINGS + "  delivery: sometimes\n"},
    ),
    Case(
        "settings: mail.worker_timeout too short",
        {},
        ["commsync.yaml:8:19: error: must be ≥ 3, got 1"],
        extra={"commsync.yaml": SETTINGS + "  worker_timeout: 1\n"},
    ),
    Case(
        "settings: connections out of range",
        {},
        ["commsync.yaml:8:16: error: must be ≤ 64, got 500"],
        extra={"commsync.yaml": SETTINGS + "  connections: 500\n"},
    ),
]


CASES += [
    Case(
        "sandbox refuses mutation at render time",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "content: Hi there",
                "content: |\n  Hi\n  {% set l = [] %}{{ l.append(customer_name) }}\n",
            )
        },
        [
            "broadcasts/a.yaml:7:3: error: the template sandbox refuses this: access to attribute 'append' of 'list' object is unsafe."
        ],
    ),
    Case(
        "a template that fails when rendered",
        {
            "broadcasts/a.yaml": NOTICE.replace(
                "subject: Hello",
                'subject: "Hi {{ customer_name if customer_name else 0 }} {{ customer_id + 1 }}"',
            )
        },
        [
            "broadcasts/a.yaml:4:11: error: this template fails when rendered with sample values: TypeError: can only concatenate str"
        ],
    ),
    Case(
        "system email: a template that fails with the mock payload",
        {
            "emails/payment_received_customer.yaml": 'subject: "{% if payment_id %}{{ payment_id + payment_total }}{% endif %}"\n'
        },
        [
            "emails/payment_received_customer.yaml:1:11: error: this template fails when rendered with sample values: TypeError: unsupported operand"
        ],
    ),
]


def _setup(repo: Repo, case: Case) -> None:
    repo.import_data()
    for rel, text in case.files.items():
        path = repo.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_reported_and_changes_nothing(repo: Repo, case: Case) -> None:
    _setup(repo, case)
    before = dump_store(repo.store_url)
    for rel, text in case.extra.items():
        (repo.root / rel).write_text(text, encoding="utf-8")
    validate = repo.cli("validate")
    plan = repo.cli("plan")
    assert validate.exit_code == 1, validate.output
    assert plan.exit_code == 1, plan.output
    for expected in case.expected:
        assert expected in validate.stdout, (
            f"{expected!r} not in validate output:\n{validate.stdout}"
        )
        assert expected in plan.stderr, f"{expected!r} not in plan output:\n{plan.stderr}"
    reported = [line for line in validate.stdout.splitlines() if ": error: " in line]
    assert len(reported) == len(case.expected) or case.name == "alias bomb", reported
    assert dump_store(repo.store_url) == before


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_every_error_of_the_repository_is_reported_in_one_run(repo: Repo) -> None:
    repo.import_data()
    repo.write("broadcasts/one.yaml", NOTICE + "colour: red\n")
    repo.write("broadcasts/deep/two.yaml", NOTICE.replace("kind: notice", "kind: banner"))
    repo.write("emails/payment_received_customer.yaml", "delay: soon\n")
    repo.write("emails/custom.yaml", "subject: x\n")
    result = repo.cli("validate", "--format", "json")
    assert result.exit_code == 1
    import json

    paths = sorted({d["path"] for d in json.loads(result.stdout)["diagnostics"]})
    assert paths == [
        "broadcasts/deep/two.yaml",
        "broadcasts/one.yaml",
        "emails/custom.yaml",
        "emails/payment_received_customer.yaml",
    ]


@dataclass(frozen=True)
class RowCase:
    name: str
    kind: str
    filename: str
    text: str
    expected: list[str]


ROW_CASES = [
    RowCase(
        "customers: bad email",
        "customers",
        "c.csv",
        "id,email\n10,ok@example.com\n11,not-an-email\n",
        ["c.csv:3: error: email 'not-an-email' is not an email address"],
    ),
    RowCase(
        "customers: missing column",
        "customers",
        "c.csv",
        "id,username\n10,bob\n",
        ["c.csv:1: error: header lacks column(s) email"],
    ),
    RowCase(
        "customers: unknown column",
        "customers",
        "c.csv",
        "id,email,plan\n10,a@example.com,pro\n",
        ["c.csv:1: error: unknown column(s) plan"],
    ),
    RowCase(
        "customers: duplicate id",
        "customers",
        "c.csv",
        "id,email\n10,a@example.com\n10,b@example.com\n",
        ["c.csv:3: error: duplicate row for 10 (first on line 2)"],
    ),
    RowCase(
        "customers: wrong field count",
        "customers",
        "c.csv",
        "id,email\n10,a@example.com,extra\n",
        ["c.csv:2: error: wrong number of fields for the header"],
    ),
    RowCase(
        "customers: header injection in a name",
        "customers",
        "c.csv",
        'id,email,first_name\n10,a@example.com,"Ann\nBcc: x"\n',
        ["c.csv:2: error: first_name must be one line"],
    ),
    RowCase(
        "customers: JSONL with a bad line",
        "customers",
        "c.jsonl",
        '{"id": "10", "email": "a@example.com"}\n{"id": 11,\n',
        ["c.jsonl:2: error: invalid JSON"],
    ),
    RowCase(
        "customers: JSONL wrong type",
        "customers",
        "c.jsonl",
        '{"id": "10", "email": ["a@example.com"]}\n',
        ["c.jsonl:1: error: email must be a string or an integer"],
    ),
    RowCase(
        "products: bad slug",
        "products",
        "p.csv",
        "slug,name\nPro Plan,Pro\n",
        ["p.csv:2: error: slug 'Pro Plan' is not a valid product slug"],
    ),
    RowCase(
        "memberships: unknown customer and product",
        "memberships",
        "m.csv",
        "customer_id,product,status\n1,pro,active\n99,pro,active\n1,gold,active\n",
        [
            "m.csv:3: error: unknown customer '99' (import customers first)",
            "m.csv:4: error: unknown product 'gold' (import products first)",
        ],
    ),
    RowCase(
        "memberships: empty status",
        "memberships",
        "m.csv",
        "customer_id,product,status\n1,pro,\n",
        ["m.csv:2: error: status is empty"],
    ),
    RowCase(
        "memberships: no rows",
        "memberships",
        "m.csv",
        "customer_id,product,status\n",
        ["m.csv:1: error: no rows to import"],
    ),
]


@pytest.mark.parametrize("case", ROW_CASES, ids=[c.name for c in ROW_CASES])
def test_bad_rows_are_reported_and_nothing_of_the_file_is_written(
    repo: Repo, case: RowCase
) -> None:
    repo.import_data()
    before = dump_store(repo.store_url)
    path = repo.write(case.filename, case.text)
    result = repo.cli(case.kind, "import", str(path.relative_to(repo.root)))
    assert result.exit_code == 1, result.output
    reported = [
        line
        for line in result.stderr.splitlines()
        if ": error: " in line and not line.startswith("error:")
    ]
    for expected in case.expected:
        assert any(line.startswith(expected) for line in reported), (
            f"{expected!r} not in {reported}"
        )
    assert len(reported) == len(case.expected), reported
    assert dump_store(repo.store_url) == before


def test_one_file_with_several_kinds_of_error_reports_them_all(repo: Repo) -> None:
    repo.import_data()
    repo.write(
        "broadcasts/a.yaml",
        "kind: notice\ntargets: {products: [pro, gold]}\nsubject: Hi {{ customer_nme }}\ncontent: x\ncolour: red\n",
    )
    repo.write("emails/payment_failed_admin.yaml", "active: maybe\nsubject: '{{ nope }}'\n")
    lines = repo.cli("validate").stdout.splitlines()
    expected = [
        "broadcasts/a.yaml:2:27: error: unknown product 'gold'",
        "broadcasts/a.yaml:3:16: error: unknown placeholder 'customer_nme' for notices (did you mean 'customer_name'?)",
        "broadcasts/a.yaml:5:1: error: unknown key 'colour' (expected one of: allow_resend, content, dismissible, expires_at, format, id, kind, max_lateness, message_type, send_at, starts_at, subject, targets)",
        "emails/payment_failed_admin.yaml:1:9: error: expected true or false, got string 'maybe'",
        "emails/payment_failed_admin.yaml:2:14: error: unknown placeholder 'nope' for event payment_failed (available: ",
    ]
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
