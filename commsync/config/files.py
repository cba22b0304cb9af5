"""Where files are read from: a directory on disk, or a commit of a git repository (`--ref`).

Both trees accept and refuse the same things. A symbolic link is followed when it names a
regular file inside the tree's root; a link that leaves the root, loops, dangles or names a
directory, and a FIFO, socket or device, is listed (so the caller can report it, naming the
link) but never read. A file larger than the caller's limit is refused before it is read.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from commsync.diagnostics import Diagnostic
from commsync.errors import GitError
from commsync.model import SourceInfo
from commsync.model.limits import DEFAULT_LIMITS

if TYPE_CHECKING:
    import git

_MAX_HOPS = 16  # links followed in a row before a chain counts as a loop


YAML_SUFFIXES = (".yaml", ".yml")  # read alike (SPEC §9)


def strip_yaml_suffix(path: str) -> str:
    """`broadcasts/a.yml` → `broadcasts/a`; any other path as it is."""
    for suffix in YAML_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


class UnreadableFile(Exception):
    """A listed path that is not read: the message says why, naming the path."""


class FileTree(Protocol):
    """Read-only access to files by POSIX path relative to the tree's root."""

    info: SourceInfo

    def files(self, directory: str, *, recursive: bool = True) -> list[str]:
        """Paths of the files under `directory` (sorted, hidden names skipped), including links
        and special files that `read` refuses."""
        ...

    def read(self, path: str, max_bytes: int = DEFAULT_LIMITS.file_bytes) -> bytes | None:
        """The file's bytes; None when it does not exist; UnreadableFile when it must not be
        read (a link out of the tree, a loop, a special file, more than `max_bytes`)."""
        ...

    def check(self, path: str) -> None:
        """UnreadableFile when `read` would refuse the listed `path` (nothing is read)."""
        ...


def _visible(path: str) -> bool:
    return not any(part.startswith(".") for part in PurePosixPath(path).parts)


_LEAVES = "a symbolic link that leaves the repository; commsync does not follow it"
_LOOPS = "a symbolic link that loops or leads nowhere"
_TO_DIRECTORY = "a symbolic link to a directory; commsync follows links to files only"


def _too_big(size: int, max_bytes: int) -> UnreadableFile:
    return UnreadableFile(
        f"the file is {size:,} bytes, more than the limit of {max_bytes:,} (limits.file_bytes)"
    )


def read_checked(
    tree: FileTree, path: str, max_bytes: int = DEFAULT_LIMITS.file_bytes
) -> tuple[bytes | None, list[Diagnostic]]:
    """`tree.read`, with a refusal turned into a diagnostic at the path."""
    try:
        return tree.read(path, max_bytes), []
    except UnreadableFile as exc:
        return None, [Diagnostic(path, 1, 1, str(exc))]


def check_listed(tree: FileTree, path: str) -> list[Diagnostic]:
    """A diagnostic when a listed path must not be read (nothing is read)."""
    try:
        tree.check(path)
    except UnreadableFile as exc:
        return [Diagnostic(path, 1, 1, str(exc))]
    return []


class DirectoryTree:
    """Files of a directory on disk (the working tree, or an add-on's catalog)."""

    def __init__(self, root: Path, info: SourceInfo | None = None) -> None:
        self.root = root
        self.info = info or SourceInfo("working tree")

    def files(self, directory: str, *, recursive: bool = True) -> list[str]:
        base = self.root / directory
        if base.is_symlink() or not base.is_dir():
            return []
        if not base.resolve().is_relative_to(self.root.resolve()):
            return []
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            linked = [d for d in dirnames if Path(dirpath, d).is_symlink()]  # listed, not walked
            dirnames[:] = (
                sorted(d for d in dirnames if not d.startswith(".") and d not in linked)
                if recursive
                else []
            )
            names = [*filenames, *linked]
            found.extend(f"{rel_dir}/{name}" for name in names if _visible(name))
        return sorted(found)

    def _target(self, path: str) -> Path:
        """The regular file `path` names, inside the root, or UnreadableFile saying why not."""
        where = self.root / path
        if not where.is_symlink():
            if not stat.S_ISREG(where.lstat().st_mode):
                raise UnreadableFile(
                    "not a regular file (a FIFO, socket or device); commsync does not read it"
                )
            return where
        try:
            target = where.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # a loop, or a link to nothing
            raise UnreadableFile("a symbolic link that loops or leads nowhere") from exc
        if not target.is_relative_to(self.root.resolve()):
            raise UnreadableFile(_LEAVES)
        if target.is_dir():
            raise UnreadableFile(_TO_DIRECTORY)
        if not stat.S_ISREG(target.stat().st_mode):
            raise UnreadableFile(
                "not a regular file (a FIFO, socket or device); commsync does not read it"
            )
        return target

    def check(self, path: str) -> None:
        self._target(path)

    def read(self, path: str, max_bytes: int = DEFAULT_LIMITS.file_bytes) -> bytes | None:
        where = self.root / path
        try:  # one lstat answers the common case (a plain file); every plan reads 2,000 of them
            info = where.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None  # nothing there
        if stat.S_ISDIR(info.st_mode):
            return None  # a directory: not a file
        if stat.S_ISREG(info.st_mode):
            target, size = where, info.st_size
        else:  # a link (checked), a FIFO, socket or device (refused)
            target = self._target(path)
            size = target.stat().st_size
        if size > max_bytes:
            raise _too_big(size, max_bytes)
        with target.open("rb") as handle:
            # what stat said, and one byte more to see it grew: `read(max_bytes + 1)` would
            # allocate the whole limit (1 MiB) for every file
            data = handle.read(size + 1)
            if len(data) > size:  # grew since stat: read on, up to the limit
                data += handle.read(max_bytes + 1 - len(data))
        if len(data) > max_bytes:
            raise _too_big(len(data), max_bytes)
        return data


_REGULAR = (0o100644, 0o100755, 0o100664)
_LINK = 0o120000


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
        except (KeyError, TypeError):  # TypeError: a blob on the way, not a tree
            return None

    def files(self, directory: str, *, recursive: bool = True) -> list[str]:
        node = self._node(directory)
        if node is None or node.type != "tree":
            return []
        found = []
        for item in node.traverse() if recursive else node:
            if item.type != "blob":  # directories, submodules
                continue
            rel = item.path[len(self._prefix) :] if self._prefix else item.path
            if _visible(rel):
                found.append(rel)
        return sorted(found)

    def _resolve(self, path: str) -> Any:
        """The blob of the regular file `path` names (following links inside the tree)."""
        current, hops = path, 0
        while True:
            node = self._node(current)
            if node is None or node.type == "tree":
                if hops == 0:  # nothing there, or a directory: not a file
                    return None
                raise UnreadableFile(_LOOPS if node is None else _TO_DIRECTORY)
            if node.type != "blob" or (node.mode not in _REGULAR and node.mode != _LINK):
                raise UnreadableFile("not a regular file; commsync does not read it")
            if node.mode in _REGULAR:
                return node
            hops += 1
            if hops > _MAX_HOPS:
                raise UnreadableFile(_LOOPS)
            target = node.data_stream.read(4096).decode("utf-8", "replace")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
            if target.startswith("/") or joined == ".." or joined.startswith("../"):
                raise UnreadableFile(_LEAVES)
            current = joined

    def check(self, path: str) -> None:
        self._resolve(path)

    def read(self, path: str, max_bytes: int = DEFAULT_LIMITS.file_bytes) -> bytes | None:
        blob = self._resolve(path)
        if blob is None:
            return None
        if blob.size > max_bytes:
            raise _too_big(blob.size, max_bytes)
        data: bytes = blob.data_stream.read()
        return data
