"""Where files are read from: a directory on disk, or a commit of a git repository (`--ref`)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from commsync.errors import GitError
from commsync.model import SourceInfo

if TYPE_CHECKING:
    import git


class FileTree(Protocol):
    """Read-only access to files by POSIX path relative to the tree's root."""

    info: SourceInfo

    def files(self, directory: str, *, recursive: bool = True) -> list[str]:
        """Paths of the regular files under `directory` (sorted, hidden names skipped)."""
        ...

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        ...


def _visible(path: str) -> bool:
    return not any(part.startswith(".") for part in PurePosixPath(path).parts)


class DirectoryTree:
    """Files of a directory on disk (the working tree, or an add-on's catalog)."""

    def __init__(self, root: Path, info: SourceInfo | None = None) -> None:
        self.root = root
        self.info = info or SourceInfo("working tree")

    def files(self, directory: str, *, recursive: bool = True) -> list[str]:
        base = self.root / directory
        if not base.is_dir():
            return []
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            found.extend(f"{rel_dir}/{name}" for name in filenames if _visible(name))
        return sorted(p for p in found if (self.root / p).is_file())

    def read(self, path: str) -> bytes | None:
        target = self.root / path
        return target.read_bytes() if target.is_file() else None


class GitTree:
    """Files of one commit; uncommitted changes in the working tree are invisible to it."""

    def __init__(self, root: Path, ref: str) -> None:
        import git  # GitPython is only loaded when a ref is asked for

        try:
            repo = git.Repo(root, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise GitError(f"--ref needs a git repository, and {root} is not in one") from exc
        try:
            commit = repo.commit(ref)
            commit.tree  # noqa: B018 -- a shallow clone names parents it does not have
        except (git.BadName, ValueError) as exc:
            hint = " (a shallow checkout? fetch more history)" if "~" in ref or "^" in ref else ""
            raise GitError(f"unknown git reference {ref!r}{hint}") from exc
        top = Path(repo.working_tree_dir or root).resolve()
        prefix = root.resolve().relative_to(top).as_posix()
        self._tree: Any = commit.tree
        self._prefix = "" if prefix == "." else prefix + "/"
        if self._prefix:
            try:
                self._tree = commit.tree / prefix
            except KeyError as exc:
                raise GitError(f"{prefix}/ does not exist at {ref} ({commit.hexsha[:12]})") from exc
        self.commit: git.Commit = commit
        self.info = SourceInfo(f"commit {commit.hexsha[:12]}", commit.hexsha, commit.author.name)

    def _node(self, path: str) -> Any:
        try:
            return self._tree / path if path else self._tree
        except KeyError:
            return None

    def files(self, directory: str, *, recursive: bool = True) -> list[str]:
        node = self._node(directory)
        if node is None or node.type != "tree":
            return []
        found = []
        items = node.traverse() if recursive else node.blobs
        for item in items:
            if item.type == "blob" and item.mode & 0o170000 == 0o100000:
                rel = item.path[len(self._prefix) :] if self._prefix else item.path
                if _visible(rel):
                    found.append(rel)
        return sorted(found)

    def read(self, path: str) -> bytes | None:
        node = self._node(path)
        if node is None or node.type != "blob":
            return None
        data: bytes = node.data_stream.read()
        return data
