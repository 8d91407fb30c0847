"""Atomic file and directory writes: a reader never sees a half-written artifact."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import signal
from pathlib import Path

from forgeml.errors import InputError


@contextlib.contextmanager
def atomic_writer(path: Path):
    """A binary file handle whose content appears at ``path`` only if the block completes."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")  # unique per writer
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def check_out_dir(out_dir: Path, force: bool, protect: tuple[Path, ...] = ()) -> None:
    """An existing non-empty output is never overwritten without `force`, and never one that holds
    the working directory or a ``protect``ed path (the source), which replacing it would delete."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a directory")
    target = out_dir.resolve()
    for keep in (Path.cwd(), *protect):
        keep = Path(keep).resolve()
        if target == keep or target in keep.parents:
            what = "the working directory" if keep == Path.cwd().resolve() else f"the source {keep}"
            raise InputError(f"output directory {out_dir} holds {what}, which replacing it would delete; "
                             "choose a new directory for -o")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise InputError(f"output directory {out_dir} already exists and is not empty; pass `force` to replace it")
    # Fail before the expensive work, not after it. access(2) reports EROFS even to root.
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only(parent) else "permission denied"
        raise InputError(f"output directory {out_dir}: cannot write in {parent} ({why}); nothing was written")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


#: errno values that mean "the output cannot be written" rather than "this target is broken".
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def output_oserror(e: BaseException, *, denied: bool = False) -> OSError | None:
    """The OSError behind ``e`` (itself, or in its cause/context chain) when it is an output failure
    such as a full disk or a read-only directory (with ``denied``, also a permission error); such a
    failure ends the whole run, not one target."""
    errnos = OUTPUT_ERRNOS | ({errno.EACCES, errno.EPERM} if denied else set())
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in errnos:
            return e
        e = e.__cause__ or e.__context__
    return None


def output_error(out_dir: Path, e: OSError) -> InputError:
    """One line naming the path and the cause, promising what the staging design guarantees."""
    where = e.filename or out_dir
    return InputError(f"output directory {out_dir}: cannot write {where} ({e.strerror or e}); "
                      f"nothing was written to {out_dir}")


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM until the block ends, so a rename-and-clean step is never cut in half by
    Ctrl-C (the handler then runs, once, right after). SIGKILL cannot be held; the design covers it."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


STAGING_TAG = "forgeml-staging"
_OURS = re.compile(r"\.(?P<name>.+)\.(?:forgeml-staging|forgeml-old)-(?P<pid>\d+)-[0-9a-f]+")


class StagedDir:
    """Build an output directory beside its final place and swap it in only when done.

    The staging dir is ``.<OUT>.forgeml-staging-<pid>-<hex>``: hidden, named for what it is, and
    flock-ed by its owner for its whole life. ``commit()`` is the commit point: one rename (an atomic
    exchange when ``final`` exists and the kernel has renameat2), so ``final`` is either absent, the
    old output, or the whole new one. ``discard()`` removes the staging dir, leaving ``final`` as it
    was. Staging left by a killed run (owner dead, lock free) is swept by the next run for that ``final``;
    a live run's staging is never touched.
    """

    def __init__(self, final: Path):
        self.final = final = final.resolve()
        self.committed = False
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(final)
        # mkdir (not mkdtemp, which makes it 0700) so the output gets the user's usual permissions.
        while True:
            self.path = final.parent / f".{final.name}.{STAGING_TAG}-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                self.path.mkdir()
                break
            except FileExistsError:
                continue
        self._lock = _lock_dir(self.path, block=True)

    def commit(self) -> Path:
        with signals_deferred():
            _fsync_dir(self.path)
            if self.final.exists() and _exchange(self.path, self.final):
                old = self.path  # now holds the previous output, still named (and locked) as our staging
            else:
                old = None
                if self.final.exists():
                    old = self.final.with_name(f".{self.final.name}.forgeml-old-{os.getpid()}-{secrets.token_hex(4)}")
                    os.replace(self.final, old)
                os.replace(self.path, self.final)
            self.committed = True
            _fsync_dir(self.final.parent)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            self._unlock()
        return self.final

    def discard(self) -> None:
        with signals_deferred():
            if not self.committed:
                shutil.rmtree(self.path, ignore_errors=True)
            self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _lock_dir(path: Path, block: bool) -> int | None:
    """An fd holding an exclusive flock on directory ``path``; None if another process holds it.
    The kernel drops the lock when its holder dies, even by SIGKILL."""
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(final: Path) -> list[Path]:
    """Remove staging and moved-aside dirs for ``final`` left by runs that died (SIGKILL, power cut):
    their pid is gone and nobody holds their lock. Returns what was removed."""
    removed = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _OURS.fullmatch(p.name)
        if not m or m["name"] != final.name or p.is_symlink() or not p.is_dir():
            continue
        if int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue  # a live run (or one between mkdir and flock): never touch it
        try:
            fd = _lock_dir(p, block=False)
        except OSError:
            continue
        if fd is None:
            continue
        try:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
        finally:
            os.close(fd)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
        return False  # no exchange on this kernel/filesystem (or `b` just vanished): two renames instead
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
