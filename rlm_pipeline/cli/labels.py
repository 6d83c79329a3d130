"""The label set of ``classify`` from the command line: ``--labels``, ``--labels-file`` or ``--label``.

Exactly one of the three forms is accepted:

- ``--labels a,b,c``: comma-separated, read like one CSV record, so a label
  that holds a comma is written in double quotes
  (``--labels 'billing,"technical, hardware",other'`` gives three labels) and
  ``""`` inside quotes is a literal quote; spaces around each label are dropped;
- ``--labels-file F``: one label per line (UTF-8), taken as written apart from
  surrounding spaces; blank lines are ignored, no quoting;
- ``--label X`` repeated: one label per flag, taken as written apart from
  surrounding spaces (commas and quotes stay).

Empty labels are dropped in ``--labels`` (a trailing comma is harmless);
repeated labels are refused.

Examples
--------
>>> parse_labels('billing,"technical, hardware",other')
['billing', 'technical, hardware', 'other']
>>> parse_labels("a, b ,c,")
['a', 'b', 'c']
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from rlm_pipeline.errors import InputError

__all__ = ["add_label_arguments", "labels_from_args", "parse_labels", "read_labels_file"]


def add_label_arguments(parser: Any) -> None:
    """Add ``--labels``, ``--labels-file`` and ``--label`` to ``parser``."""
    parser.add_argument(
        "--labels",
        default=None,
        help='comma-separated labels, e.g. a,b,c; quote a label with a comma: a,"b, c",d',
    )
    parser.add_argument(
        "--labels-file", default=None, metavar="FILE", help="file with one label per line"
    )
    parser.add_argument(
        "--label",
        action="append",
        default=None,
        metavar="LABEL",
        help="one label (repeat the flag; for labels with commas)",
    )


def parse_labels(text: str) -> list[str]:
    """Labels from one comma-separated string, read as one CSV record (quotes group).

    Raises
    ------
    InputError
        The string is not one well-formed CSV record (e.g. a quote left open).
    """
    if "\n" in text or "\r" in text:
        msg = "--labels must be one line; use --labels-file for one label per line"
        raise InputError(msg)
    try:
        rows = list(csv.reader([text], skipinitialspace=True, strict=True))
    except csv.Error as exc:
        msg = f'cannot read --labels {text!r}: {exc} (quote a label with a comma: a,"b, c")'
        raise InputError(msg) from exc
    return [label.strip() for row in rows for label in row if label.strip()]


def read_labels_file(path: str | Path) -> list[str]:
    """Labels from a UTF-8 file, one per line; blank lines ignored.

    Raises
    ------
    InputError
        The file is missing, unreadable or not UTF-8.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        msg = f"labels file {path} is not valid UTF-8"
        raise InputError(msg) from exc
    except OSError as exc:
        msg = f"cannot read labels file {path}: {exc.strerror or exc}"
        raise InputError(msg) from exc
    return [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]


def labels_from_args(args: argparse.Namespace) -> list[str]:
    """The checked label list from exactly one of ``--labels``, ``--labels-file``, ``--label``.

    Raises
    ------
    InputError
        None or more than one form given, no labels, or a label repeated.
    """
    given = [
        name
        for name, value in (
            ("--labels", args.labels),
            ("--labels-file", args.labels_file),
            ("--label", args.label),
        )
        if value is not None
    ]
    if len(given) != 1:
        what = "none was" if not given else f"got {' and '.join(given)}"
        msg = f"give the labels with exactly one of --labels, --labels-file or --label ({what})"
        raise InputError(msg)
    if args.labels is not None:
        labels, source = parse_labels(args.labels), "--labels"
    elif args.labels_file is not None:
        labels, source = read_labels_file(args.labels_file), f"labels file {args.labels_file}"
    else:
        labels, source = [label.strip() for label in args.label], "--label"
    if not labels:
        msg = f"no labels in {source}"
        raise InputError(msg)
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        msg = f"labels must be unique; repeated in {source}: {', '.join(map(repr, repeated))}"
        raise InputError(msg)
    if any(not label for label in labels):
        msg = f"labels must not be blank ({source})"
        raise InputError(msg)
    return labels
