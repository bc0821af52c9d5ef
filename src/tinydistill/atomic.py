"""Atomic replacement of an output folder: written beside it under a temporary name, then renamed into place.

Every exported model and every on-disk cache (tokenised splits, packed corpora) goes through
`atomic_directory`, so a crash never leaves a half-written folder at the stable path.

Temporaries live beside the target and name their writer:

    .<name>.tmp-<host>-<pid>-<random>   the folder being written
    .<name>.old-<host>-<pid>-<random>   the previous result, for the instant between the two renames

A process killed mid-write (kill -9, power loss) leaves one of them behind. The next write of the same
target removes those that are **stale**, by this rule:

- a temporary named after **this host** whose **pid is no longer running** is stale: no live process
  can still be writing it (a reused pid only keeps it, the safe direction);
- one named after **another host** (a shared file system) is never removed: we cannot see that host's
  processes, so its writer may be alive;
- `.<name>.tmp-<8 characters>` folders from versions that did not name their writer are stale once their
  last change is older than `LEGACY_STALE_SECONDS` (a day; a write takes seconds to minutes);
  `.<name>.old-<pid>` ones follow the pid rule above.

Single files written the same way (`<name>.tmp-<host>-<pid>-<random>` beside file `<name>`, then renamed: the
teacher-logit cache) follow the same rule, `remove_stale_temporary_files`; their legacy `<name>.tmp-<pid>` names
the pid rule. So a concurrent writer's folder or file is never removed. Stale `.tmp` folders go before the write (they may be
as large as a model); stale `.old` folders only after it succeeded, since one may hold the last good
result when the target itself is missing.

The result gets ordinary permissions: folders `0o777 & ~umask` and files `0o666 & ~umask` (files that
were executable keep `x` where the umask allows it). `tempfile.mkdtemp` creates 0700 and some writers
(safetensors shards) 0600, which would hide a shipped model from other users and services.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Age after which a temporary from an older version (no writer in its name) counts as stale.
LEGACY_STALE_SECONDS = 24 * 3600

# <host>-<pid>-<random>: the host is sanitised to [A-Za-z0-9._] (no "-"), so the split is unambiguous.
_OWNED = re.compile(r"(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[A-Za-z0-9_]+")
_LEGACY_TMP = re.compile(r"[a-z0-9_]{8}")  # tempfile.mkdtemp's random suffix
_LEGACY_OLD = re.compile(r"(?P<pid>\d+)")


def host_tag() -> str:
    """This machine's name as used in temporary names (only letters, digits, `.` and `_`)."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no other way to read it: set, then restore at once
    os.umask(mask)
    return mask


def apply_umask_permissions(root: str | os.PathLike) -> None:
    """Give `root` and everything below it the permissions a plain mkdir/open would have under the umask."""
    umask = current_umask()
    dir_mode, file_mode, exec_mode = 0o777 & ~umask, 0o666 & ~umask, 0o777 & ~umask
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, dir_mode)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue  # chmod would change the link's target
            os.chmod(path, exec_mode if st.st_mode & 0o111 else file_mode)


def _pid_running(pid: int) -> bool:
    if os.name != "posix":
        return True  # no safe probe (os.kill would terminate it on Windows): assume alive, keep the folder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return True
    return True


def _is_stale(path: Path, suffix: str, legacy: str) -> bool:
    """Whether the temporary `path` (named `...-<suffix>`) can no longer belong to a live writer. `legacy`: the rule
    for names without a host, "pid" (`<pid>`, the pid rule) or "age" (`<8 random characters>`, older than
    `LEGACY_STALE_SECONDS`)."""
    m = _OWNED.fullmatch(suffix)
    if m is not None:
        return m["host"] == host_tag() and not _pid_running(int(m["pid"]))
    if legacy == "pid" and (m := _LEGACY_OLD.fullmatch(suffix)) is not None:
        return not _pid_running(int(m["pid"]))
    if legacy == "age" and _LEGACY_TMP.fullmatch(suffix) is not None:
        try:
            return time.time() - path.stat().st_mtime > LEGACY_STALE_SECONDS
        except OSError:
            return False
    return False  # not a name we make: leave it alone


def temporary_owner() -> str:
    """`<host>-<pid>-<random>`, the writer part of a temporary's name (module docstring)."""
    return f"{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"


def remove_stale_temporaries(out_dir: str | os.PathLike, kinds: tuple[str, ...] = ("tmp", "old")) -> list[Path]:
    """Remove the stale `.<name>.tmp-*` / `.<name>.old-*` folders of target `out_dir` (rule: module
    docstring); returns what was removed."""
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        return []
    removed = []
    for kind in kinds:
        prefix = f".{out_dir.name}.{kind}-"
        for path in out_dir.parent.iterdir():
            if not path.name.startswith(prefix) or path.is_symlink() or not path.is_dir():
                continue
            if _is_stale(path, path.name[len(prefix):], legacy="age" if kind == "tmp" else "pid"):
                shutil.rmtree(path, ignore_errors=True)
                log.info("removed %s, left by an interrupted write of %s", path, out_dir)
                removed.append(path)
    return removed


def remove_stale_temporary_files(target: str | os.PathLike) -> list[Path]:
    """Remove the stale `<name>.tmp-<host>-<pid>-<random>` files (names from `temporary_owner`) that writers of the
    file `target` left when killed, by the folders' rule (module docstring); `<name>.tmp-<pid>` ones of versions
    that did not name the host follow the pid rule alone, as legacy `.old-<pid>` folders do. Returns what was
    removed."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    prefix = f"{target.name}.tmp-"
    removed = []
    for path in target.parent.iterdir():
        if not path.name.startswith(prefix) or path.is_symlink() or not path.is_file():
            continue
        if _is_stale(path, path.name[len(prefix):], legacy="pid"):
            path.unlink(missing_ok=True)  # missing: another process cleaned it up first
            log.info("removed %s, left by an interrupted write of %s", path, target)
            removed.append(path)
    return removed


def atomic_directory(out_dir: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp_dir)` then move tmp_dir to `out_dir`, replacing it.

    A crash during `write` leaves the previous result (or nothing) at `out_dir`, never a half-written
    folder. Stale temporaries of the same target left by killed writers are removed, never a live
    writer's (rule and naming: module docstring); the result gets umask permissions.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir, kinds=("tmp",))
    owner = f"{host_tag()}-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{owner}-", dir=out_dir.parent))
    try:
        write(tmp)
        apply_umask_permissions(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{owner}-{secrets.token_hex(4)}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    remove_stale_temporaries(out_dir, kinds=("old",))
    return out_dir


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside the file `target` (`<name>.tmp-<host>-<pid>-<random>`); when the block ends
    without an error it replaces `target`, else it is removed. Readers see the old file or the new one, never a
    part. Stale temporaries of `target` left by killed writers go first (`remove_stale_temporary_files`). Writers
    that infer a format from the extension (matplotlib's savefig) need it given explicitly."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_files(target)
    tmp = target.with_name(f"{target.name}.tmp-{temporary_owner()}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `target` through `atomic_file`, flushed to disk before the rename."""
    with atomic_file(target) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(target)

