"""Where the CLI writes: checks made before any model call, and an atomic, tidy write.

:func:`check_output_path` refuses an output that would overwrite or feed the
input (the same file, a file inside an input directory, a path an input glob
matches) and an output that is an existing directory.  :func:`staged_output`
writes to a temporary file beside the output and renames it into place only
when the run commits; otherwise the temporary file and every folder it had to
create are removed, so a failed run leaves nothing behind.  The file gets the
mode a plain ``open()`` would give under the user's umask (``0o666 & ~umask``),
not the ``0o600`` of :func:`tempfile.mkstemp`.

Examples
--------
>>> check_output_path("/data/in.parquet", "/data/in.parquet")
Traceback (most recent call last):
...
rlm_pipeline.errors.InputError: --output /data/in.parquet is the input file; write to another path
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_pipeline.errors import InputError

__all__ = ["StagedOutput", "check_output_folder", "check_output_path", "staged_output"]


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _overlap(input_location: Any, out: Path) -> str | None:
    """How the output path ``out`` overlaps the input, or None.

    ``"glob"``: an input glob matches it, or it holds or lies inside a file the
    glob matches; ``"same"``: it is the input; ``"inside"``: it lies inside the
    input directory; ``"contains"``: the input lies inside it.  Symlinks and
    ``..`` are resolved; an input that is not a path (a frame) never overlaps.
    """
    if not isinstance(input_location, str | os.PathLike):
        return None
    location = os.path.expanduser(os.fspath(input_location))
    real_out = _real(out)
    if glob.has_magic(location):
        pattern = os.path.abspath(location)
        if fnmatch.fnmatch(str(out), pattern) or fnmatch.fnmatch(str(real_out), pattern):
            return "glob"
        files = [_real(_absolute(f)) for f in glob.glob(location, recursive=True)]
        if any(_inside(f, real_out) or _inside(real_out, f) for f in files):
            return "glob"
        return None
    source = _real(_absolute(location))
    if real_out == source:
        return "same"
    if _inside(real_out, source):
        return "inside"
    if _inside(source, real_out):
        return "contains"
    return None


def check_output_path(input_location: Any, output: str | os.PathLike[str]) -> Path:
    """The absolute output path, after refusing outputs that would clash with the input.

    ``input_location`` is what the user gave as INPUT (a file, directory or
    glob); anything that is not a path (a frame) is not compared.

    Raises
    ------
    InputError
        The output is an existing directory, is the input file, lies inside the
        input directory, or matches the input glob.
    """
    out = _absolute(output)
    if out.is_dir():
        msg = f"--output {output} is a directory; give a file path such as {out / 'labels.parquet'}"
        raise InputError(msg)
    kind = _overlap(input_location, out)
    if kind == "glob":
        msg = (
            f"--output {output} matches the input glob {input_location}: the next run "
            "would read it as input; write outside it"
        )
        raise InputError(msg)
    if kind == "same":
        msg = f"--output {output} is the input file; write to another path"
        raise InputError(msg)
    if kind is not None:
        msg = (
            f"--output {output} is inside the input directory {input_location}: the next "
            "run would read it as input; write outside it"
        )
        raise InputError(msg)
    return out


def _proc_umask() -> int | None:
    """The umask from ``/proc/self/status`` (Linux >= 4.7), or None where it is not there."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_umask_once() -> int:
    """The umask read by setting it and putting it back: done once, at import (CLI start,
    before any thread), only where ``/proc`` cannot tell it."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_START_UMASK = _read_umask_once() if _proc_umask() is None else None


def _umask() -> int:
    """The process umask, read without changing it (other threads may be creating files)."""
    mask = _proc_umask()
    if mask is not None:
        return mask
    return _START_UMASK if _START_UMASK is not None else 0o022


@dataclass
class StagedOutput:
    """A temporary file beside ``final``; :meth:`commit` renames it into place."""

    final: Path
    tmp: Path
    created: list[Path] = field(default_factory=list)
    committed: bool = False

    def commit(self) -> None:
        """Rename the file over ``final`` (atomic), with mode ``0o666 & ~umask``."""
        os.chmod(self.tmp, 0o666 & ~_umask())
        os.replace(self.tmp, self.final)
        self.committed = True


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; the folders created, deepest first."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        msg = f"cannot create folder {folder}: {exc.strerror or exc}"
        raise InputError(msg) from exc
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def staged_output(final: Path) -> Iterator[StagedOutput]:
    """A :class:`StagedOutput` for ``final``; without :meth:`~StagedOutput.commit`, nothing stays.

    The temporary file is hidden (``.NAME.XXXX.tmp``) and created empty.  On
    leaving without a commit (an error, Ctrl-C, a refused run) it is deleted,
    and so is every folder created to hold it.
    """
    created = _make_parents(final.parent)
    tmp: Path | None = None
    staged: StagedOutput | None = None
    try:
        for _ in range(100):
            candidate = final.parent / f".{final.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                msg = f"cannot write in {final.parent}: {exc.strerror or exc}"
                raise InputError(msg) from exc
            os.close(fd)
            tmp = candidate
            break
        if tmp is None:
            msg = f"cannot create a temporary file in {final.parent}"
            raise InputError(msg)
        staged = StagedOutput(final=final, tmp=tmp, created=created)
        yield staged
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if staged is None or not staged.committed:
            _remove_empty(created)


def check_output_folder(input_location: Any, output: str | os.PathLike[str]) -> Path:
    """The absolute output folder of a job, after refusing one that overlaps the input.

    For jobs that write a folder of partitions (``jobs/``): the output must not
    be the input, lie inside an input directory or match an input glob, and the
    input must not lie inside the output (replacing the output's partitions
    would delete input files).

    Raises
    ------
    InputError
        The folders overlap, or the output is an existing file.

    Examples
    --------
    >>> check_output_folder("/data/raw", "/data/raw/curated")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: output /data/raw/curated overlaps the input /data/raw: write to a folder outside it
    """
    out = _absolute(output)
    if out.is_file():
        msg = f"output {output} is a file; give a folder"
        raise InputError(msg)
    if _overlap(input_location, out) is not None:
        msg = f"output {output} overlaps the input {input_location}: write to a folder outside it"
        raise InputError(msg)
    return out
