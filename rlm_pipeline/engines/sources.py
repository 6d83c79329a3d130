"""Find and check input files before any engine touches them.

Cheap checks up front turn bad input into one clear :class:`InputError`
instead of a deep Polars or Spark traceback later: missing paths, directories
or globs without data files, unreadable Parquet footers, Parquet files whose
schemas disagree, unknown extensions, empty files and text that is not UTF-8.
"""

from __future__ import annotations

import codecs
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from rlm_pipeline.errors import InputError

__all__ = ["FileSource", "SourceKind", "is_path_like", "resolve_source"]

SourceKind = Literal["parquet", "csv", "jsonl"]

_KINDS: dict[str, SourceKind] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_ACCEPTED = ".parquet, .csv, .jsonl/.ndjson (or a directory or glob of Parquet files)"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileSource:
    """Checked input files.

    Attributes
    ----------
    kind
        ``"parquet"``, ``"csv"`` or ``"jsonl"``.
    location
        What the user gave (file, directory or glob), as a string.
    files
        The data files, sorted (hidden ``_``/``.`` files left out).
    is_dir
        ``location`` is a directory (Hive-style ``key=value`` folders become columns).
    """

    kind: SourceKind
    location: str
    files: tuple[str, ...]
    is_dir: bool = False

    @property
    def polars_location(self) -> list[str]:
        """The checked files, for ``pl.scan_*`` (whose globs would also pick hidden files)."""
        return list(self.files)


def is_path_like(data: object) -> bool:
    """True for ``str`` and ``os.PathLike`` inputs."""
    return isinstance(data, str | os.PathLike)


def resolve_source(data: str | os.PathLike[str]) -> FileSource:
    """Find the files behind a path, directory or glob and check them.

    Raises
    ------
    InputError
        Missing path, nothing to read, unknown extension, unreadable or
        inconsistent Parquet, empty or non-UTF-8 text files.

    Examples
    --------
    >>> resolve_source("/no/such/file.parquet")
    Traceback (most recent call last):
    ...
    rlm_pipeline.errors.InputError: input not found: /no/such/file.parquet
    """
    location = os.path.expanduser(os.fspath(data))
    if glob.has_magic(location):
        files = sorted(f for f in glob.glob(location, recursive=True) if _visible_file(f))
        if not files:
            msg = f"no files match {location}"
            raise InputError(msg)
        kinds = {_kind_of(f) for f in files}
        if len(kinds) > 1:
            msg = f"{location} matches files of different kinds ({', '.join(sorted(kinds))})"
            raise InputError(msg)
        source = FileSource(kinds.pop(), location, tuple(files))
    elif os.path.isdir(location):
        files = sorted(
            str(p)
            for p in Path(location).rglob("*")
            if _visible_file(str(p), root=location) and _KINDS.get(p.suffix.lower()) == "parquet"
        )
        if not files:
            msg = f"no Parquet files in directory {location}"
            raise InputError(msg)
        source = FileSource("parquet", location, tuple(files), is_dir=True)
    elif os.path.isfile(location):
        source = FileSource(_kind_of(location), location, (location,))
    else:
        msg = f"input not found: {location}"
        raise InputError(msg)
    _CHECKS[source.kind](source)
    return source


def _visible_file(path: str, root: str | None = None) -> bool:
    """A data file: not hidden (``.x``) nor a marker (``_SUCCESS``, ``_temporary/``)."""
    parts = Path(os.path.relpath(path, root)).parts if root else (os.path.basename(path),)
    return os.path.isfile(path) and not any(p.startswith(("_", ".")) for p in parts)


def _kind_of(path: str) -> SourceKind:
    kind = _KINDS.get(Path(path).suffix.lower())
    if kind is None:
        msg = f"unsupported input {path}: expected {_ACCEPTED}"
        raise InputError(msg)
    return kind


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _check_parquet(source: FileSource) -> None:
    first: pa.Schema | None = None
    first_file = ""
    for path in source.files:
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            msg = f"not a readable Parquet file: {path} ({_first_line(exc)})"
            raise InputError(msg) from exc
        if first is None:
            first, first_file = schema, path
        elif not schema.remove_metadata().equals(first.remove_metadata()):
            msg = (
                f"Parquet files have different schemas: {first_file} and {path}; "
                "read them separately"
            )
            raise InputError(msg)


def _check_text(source: FileSource, what: str) -> bytes:
    """Check each file is non-empty UTF-8; return the first non-blank byte of the first file."""
    first_byte = b""
    for path in source.files:
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        offset = 0
        newlines = 0
        lead = b""
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as exc:
                        bad = offset + max(0, exc.start)
                        line = newlines + chunk[: max(0, exc.start)].count(b"\n") + 1
                        msg = (
                            f"{what} file {path} is not valid UTF-8 (at byte offset {bad}, line {line}); "
                            "re-encode it as UTF-8"
                        )
                        raise InputError(msg) from exc
                    if not lead:
                        lead = chunk.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
                    newlines += chunk.count(b"\n")
                    offset += len(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            msg = f"{what} file {path} ends inside a UTF-8 character; re-encode it as UTF-8"
            raise InputError(msg) from exc
        except OSError as exc:
            msg = f"cannot read {path}: {_first_line(exc)}"
            raise InputError(msg) from exc
        if not lead:
            msg = f"{what} file {path} is empty"
            raise InputError(msg)
        first_byte = first_byte or lead
    return first_byte


def _check_csv(source: FileSource) -> None:
    _check_text(source, "CSV")


def _check_jsonl(source: FileSource) -> None:
    if _check_text(source, "JSON Lines") != b"{":
        msg = (
            f"{source.location} is not JSON Lines: expected one JSON object per line "
            "(a JSON array is not supported)"
        )
        raise InputError(msg)


_CHECKS = {"parquet": _check_parquet, "csv": _check_csv, "jsonl": _check_jsonl}
