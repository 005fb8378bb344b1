"""The compiled kernels' house rule (geo/_jit.py): a kernel reads only its arguments and names of
its own module, because numba's disk cache is keyed by the kernel's own source file."""

from __future__ import annotations

import ast
from pathlib import Path

GEO = Path(__file__).parents[1] / "geo"


def _is_compiled(fn: ast.FunctionDef) -> bool:
    for d in fn.decorator_list:
        name = d.func if isinstance(d, ast.Call) else d
        if isinstance(name, ast.Name) and name.id in ("kernel", "njit"):
            return True
        if isinstance(name, ast.Attribute) and name.attr in ("kernel", "njit"):
            return True
    return False


def _names_read(fn: ast.FunctionDef) -> set[str]:
    return {x.id for stmt in fn.body for x in ast.walk(stmt) if isinstance(x, ast.Name)}


def test_kernels_read_no_names_imported_from_other_icv_modules() -> None:
    found, bad = 0, []
    for path in sorted(GEO.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        from_icv = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.level >= 1
                    for a in n.names}
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and _is_compiled(fn):
                found += 1
                used = _names_read(fn)
                bad += [f"{path.name}:{fn.name} reads {u}" for u in sorted(used & from_icv)]
    assert found >= 10  # (the rule is checked on the real kernels)
    assert not bad, bad


def test_the_rule_catches_a_constant_from_another_module(tmp_path: Path) -> None:
    src = "from ._fleet_engine import UM\nfrom ._jit import kernel\n\n@kernel\ndef f(a):\n    return a * UM\n"
    tree = ast.parse(src)
    fn = tree.body[2]
    from_icv = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.level >= 1 for a in n.names}
    assert _is_compiled(fn) and _names_read(fn) & from_icv == {"UM"}
