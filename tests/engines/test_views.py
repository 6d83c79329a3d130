from __future__ import annotations

import pytest

from rlm_pipeline.engines.views import MAX_VIEWS, ViewRegistry, check_columns, check_view_name
from rlm_pipeline.errors import InputError


@pytest.mark.parametrize("name", ["context2", "_x", "A1_b", "a" * 64])
def test_good_names(name: str) -> None:
    assert check_view_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "1a", "a-b", "a b", "a.b", "x;DROP TABLE t", "`x`", "é", "a" * 65, None, 3, "a\n"],
)
def test_bad_names(name: object) -> None:
    with pytest.raises(InputError, match="invalid view name"):
        check_view_name(name)


def test_context_is_protected_from_model_operations() -> None:
    reg: ViewRegistry[int] = ViewRegistry()
    reg.put("context", 1, host=True)
    for name in ("context", "CONTEXT", "Context"):
        with pytest.raises(InputError, match="cannot be replaced|only in case"):
            reg.put(name, 2)
    reg.put("context", 3, host=True)
    assert reg.get("context") == 3


def test_replace_and_order_and_unknown() -> None:
    reg: ViewRegistry[int] = ViewRegistry()
    reg.put("a", 1)
    reg.put("b", 2)
    reg.put("a", 3)
    assert reg.names() == ["b", "a"] and reg.get("a") == 3
    with pytest.raises(InputError, match="exists already"):
        reg.put("a", 4, replace=False)
    with pytest.raises(InputError, match="unknown view 'z'; known views: b, a"):
        reg.get("z")
    assert reg.pop("b") == 2 and reg.names() == ["a"]


def test_number_of_views_is_bounded() -> None:
    reg: ViewRegistry[int] = ViewRegistry()
    for i in range(MAX_VIEWS):
        reg.put(f"v{i}", i)
    with pytest.raises(InputError, match=f"too many views \\(limit {MAX_VIEWS}\\)"):
        reg.put("one_more", 0)
    reg.put("v0", -1)  # replacing is still fine
    assert reg.get("v0") == -1


def test_check_columns() -> None:
    schema = {"a": "int64", "b": "string"}
    assert check_columns(["b", "a"], schema, "t") == ["b", "a"]
    with pytest.raises(InputError, match="must be a list of column names"):
        check_columns("a", schema, "t")
    with pytest.raises(InputError, match=r"unknown columns \['c'\] in view 't'; columns: a, b"):
        check_columns(["a", "c"], schema, "t")
