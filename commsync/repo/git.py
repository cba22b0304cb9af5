"""What git says about the working tree: its HEAD, uncommitted managed files, changed paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

from commsync.errors import GitError
from commsync.model import SourceInfo


def git_prefix(root: Path) -> str:
    """The project's directory inside its git work tree ("" at the top or outside git)."""
    import git

    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return ""
    top = Path(repo.working_tree_dir or root).resolve()
    rel = root.resolve().relative_to(top).as_posix()
    return "" if rel == "." else rel + "/"


MANAGED = ("commsync.yaml", "broadcasts", "emails", "layouts")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def inspect_worktree(root: Path, extra: tuple[str, ...] = ()) -> tuple[SourceInfo, list[str]]:
    """The working tree's source info (HEAD commit and author) and its uncommitted managed paths.

    Asked of git itself, three short commands: every plan and validate pays this, and loading
    GitPython for it cost 75 ms of start-up (GitPython stays for reading files at a ref).
    """
    try:
        top = _git(root, "rev-parse", "--show-prefix")
    except FileNotFoundError:  # no git installed
        return SourceInfo("working tree (not in git)"), []
    if top.returncode != 0:
        return SourceInfo("working tree (not in git)"), []
    head = _git(root, "log", "-1", "--format=%H%x00%an")
    if head.returncode != 0 or "\x00" not in head.stdout:  # a repository without commits
        return SourceInfo("working tree (no commits yet)"), ["(no commit yet)"]
    sha, author = head.stdout.rstrip("\n").split("\x00", 1)
    # pathspecs relative to the project (-C); porcelain paths relative to the top of the work tree
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *MANAGED, *extra)
    if status.returncode != 0:
        raise GitError(f"git status: {status.stderr.strip()}")
    dirty = [line[3:] for line in status.stdout.splitlines() if line.strip()]
    label = f"working tree at {sha[:12]}" + (" with uncommitted changes" if dirty else "")
    return SourceInfo(label, sha, author), dirty


def changed_since(root: Path, since: str, ref: str | None = None) -> frozenset[str]:
    """Project-relative paths that differ between `since` and `ref` (or the working tree).

    Deleted and renamed files count under their old and new paths, so a retracted notice's file
    is among them; in the working tree, untracked files count too.
    """
    import git

    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise GitError(f"--changed-since needs a git repository, and {root} is not in one") from exc
    for name in (since, ref):
        if name is not None:
            try:  # git itself, not GitPython: a shallow clone knows of parents it does not have
                repo.git.rev_parse("--verify", "--quiet", f"{name}^{{commit}}")
            except git.GitCommandError as exc:
                hint = (
                    " (a shallow checkout? fetch more history)"
                    if "~" in name or "^" in name
                    else ""
                )
                raise GitError(f"unknown git reference {name!r}{hint}") from exc
    prefix = git_prefix(root)
    args = ["--name-only", "--no-renames", since, *([ref] if ref else [])]
    try:
        paths = set(repo.git.diff(*args, "--", prefix or ".").splitlines())
    except git.GitCommandError as exc:
        raise GitError(f"git diff {since}: {str(exc.stderr).strip()}") from exc
    if ref is None:
        untracked = repo.git.ls_files("--others", "--exclude-standard", "--", prefix or ".")
        paths |= set(untracked.splitlines())
    top = Path(repo.working_tree_dir or root).resolve()
    relative = root.resolve().relative_to(top).as_posix()
    cut = "" if relative == "." else relative + "/"
    return frozenset(p[len(cut) :] for p in paths if p and p.startswith(cut))
