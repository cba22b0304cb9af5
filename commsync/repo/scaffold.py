"""`commsync init`: a new operator repository, optionally the demo with a seeded store."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from commsync.config.resources import data_dir
from commsync.errors import ConfigError
from commsync.repo.schemas import EDITOR_SETTINGS, SCHEMAS_DIR, editor_settings, write_schemas

SETTINGS = """\
# yaml-language-server: $schema=schemas/commsync.schema.json
version: 1

network:
  name: My Network
  url: https://network.example

# The live store: SQLite next to this file by default; set COMMSYNC_STORE for PostgreSQL.
store: sqlite:///.commsync/store.db

mail:
  from: My Network <hello@network.example>
  admins: []
  # Emails are written to a local Maildir until you configure SMTP
  # (COMMSYNC_SMTP_URL=smtp+starttls://host:587 and COMMSYNC_SMTP_USERNAME/PASSWORD).
  transport: maildir:.commsync/outbox

targeting:
  membership_statuses: [active, trialing]

imports: critical
"""

WELCOME = """\
# yaml-language-server: $schema=../schemas/broadcast.schema.json
# A dashboard notice for every customer. Change it, run `commsync plan`, open a pull request.
kind: notice
message_type: info
subject: "Welcome to {{ network_name }}"
targets:
  all: true
content: |
  Hi {{ customer_first_name }}, this notice is managed as code with commsync.
"""

IMPORT_ONLY = """\
# yaml-language-server: $schema=../schemas/email.schema.json
# Installs the registered default as it ships. Add keys (subject, content, active, delay, …)
# to override them; delete a key to put it back to the default.
email: site_published_customer
"""

GITIGNORE = ".commsync/\n"
REQUIREMENT_FILE = "requirements-commsync.txt"


def requirement_text() -> str:
    """The one requirement the CI recipes install: the commsync that wrote it, pinned."""
    from commsync import __version__

    return (
        "# What the CI recipes install: pip install -r requirements-commsync.txt\n"
        "# Pinned to the commsync that wrote this file; upgrade by changing the version. To\n"
        "# install from elsewhere, replace the last line with one of:\n"
        f"#   commsync[postgres] @ git+https://git.example.com/you/commsync@v{__version__}\n"
        f"#   commsync[postgres] @ https://files.example.com/commsync-{__version__}-py3-none-any.whl\n"
        f"commsync[postgres]=={__version__}\n"
    )


DEMO_DATA: tuple[tuple[Literal["customers", "products", "memberships"], str], ...] = (
    ("products", "data/products.csv"),
    ("customers", "data/customers.csv"),
    ("memberships", "data/memberships.csv"),
)


@dataclass(frozen=True, slots=True)
class InitResult:
    root: Path
    files: tuple[str, ...]
    commit: str | None
    git_note: str


def _write_scaffold(root: Path) -> list[str]:
    files = {
        "commsync.yaml": SETTINGS,
        "broadcasts/welcome.yaml": WELCOME,
        "emails/site_published_customer.yaml": IMPORT_ONLY,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return list(files)


def _copy_demo(root: Path) -> list[str]:
    source = data_dir("examples")
    written = []
    for item in sorted(source.rglob("*")):
        rel = item.relative_to(source)
        if rel.parts[0] in ("ci", ".commsync") or "__pycache__" in rel.parts or item.is_dir():
            continue
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item, target)
        written.append(rel.as_posix())
    return written


def _editor_support(root: Path) -> list[str]:
    """The schemas (which the files' modelines point at), the requirement the CI recipes
    install, and VS Code's settings, unless the repository has its own settings already."""
    out = [p.relative_to(root).as_posix() for p in write_schemas(root / SCHEMAS_DIR)]
    if not (root / REQUIREMENT_FILE).exists():
        (root / REQUIREMENT_FILE).write_text(requirement_text(), encoding="utf-8")
        out.append(REQUIREMENT_FILE)
    settings = root / EDITOR_SETTINGS
    if not settings.exists():
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(editor_settings(), encoding="utf-8")
        out.append(EDITOR_SETTINGS)
    return out


def _ignore_store(root: Path) -> str:
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if ".commsync/" not in text.splitlines():
        path.write_text(
            text + ("" if not text or text.endswith("\n") else "\n") + GITIGNORE, encoding="utf-8"
        )
    return ".gitignore"


_FIRST_COMMIT = "Start managing customer communications with commsync"


def _commit(root: Path, files: list[str], *, own: bool) -> tuple[str | None, str]:
    """A first commit in a repository of its own — always for the demo (self-contained, wherever
    it is created); otherwise only when `root` is not inside a git repository already (a
    directory of a monorepo is a real layout), and then the note says how to commit."""
    import git

    if not own:
        try:
            enclosing = git.Repo(root, search_parent_directories=True)
        except git.InvalidGitRepositoryError:
            pass
        else:
            top = Path(enclosing.working_tree_dir or root)
            where = root.resolve().relative_to(top.resolve()).as_posix() or "."
            return None, (
                f"inside the git repository at {top}: apply refuses files that are not "
                f"committed, so commit them first:\n  git -C {top} add {where}\n"
                f'  git -C {top} commit -m "{_FIRST_COMMIT}"'
            )
    configured = git.Git().config("--get", "init.defaultBranch", with_exceptions=False)
    # the operator's own default branch if they set one, else main (not git's historical master)
    repo = git.Repo.init(root, initial_branch=configured.strip() or "main")
    repo.index.add(files)
    commit = repo.index.commit(_FIRST_COMMIT)
    return commit.hexsha, f"initialised a git repository with a first commit ({commit.hexsha[:12]})"


def create_repository(root: Path, *, demo: bool) -> InitResult:
    """Write the files (and commit them when `root` is not in a git repository yet)."""
    if (root / "commsync.yaml").exists():
        raise ConfigError(f"{root / 'commsync.yaml'} already exists; nothing was changed")
    root.mkdir(parents=True, exist_ok=True)
    written = _copy_demo(root) if demo else _write_scaffold(root)
    files = sorted([*written, *_editor_support(root), _ignore_store(root)])
    commit, note = _commit(root, files, own=demo)
    return InitResult(root, tuple(files), commit, note)
