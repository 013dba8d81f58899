"""The package layout is a layering: each package imports only the layers below it, so no
import cycle can form between them (read from the source, TYPE_CHECKING imports included)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ikecp
import pytest

ROOT = Path(ikecp.__file__).parent

#: Package (or top-level module) -> the ikecp packages it must never import.
FORBIDDEN = {
    "events": {"engine", "cp", "roles", "net", "loadgen", "lab", "testing", "config", "api"},
    "cp": {"engine", "roles", "net", "loadgen", "lab", "testing", "config", "api"},
    "engine": {"roles", "net", "loadgen", "lab", "testing", "config", "cli", "api"},
    "net": {"roles", "loadgen", "lab", "testing", "config", "cli", "api"},
    "roles": {"loadgen", "lab", "testing", "cli", "api"},
    "dataplane": {"roles", "loadgen", "lab", "testing", "cli", "api"},
}


#: The one crossing allowed: the I/O drivers run the multi-SA ``Dispatcher`` they are given.
ALLOWED = {("net", "ikecp.roles.dispatch"), ("net", "ikecp.roles.dispatch.Dispatcher")}


def _unit(module: str) -> str:
    """``ikecp.engine.sa`` -> ``engine``; ``ikecp.events`` -> ``events``."""
    return module.split(".")[1] if module.count(".") else ""


def imports(path: Path) -> set[str]:
    """Every ikecp module ``path`` imports, as absolute dotted names."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    package = list(rel.parts[:-1])  # a package's __init__ resolves like its modules
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ikecp"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            if mod.startswith("ikecp"):
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def test_each_layer_imports_only_the_layers_below() -> None:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        unit = rel.parts[0].removesuffix(".py")
        for target in imports(path):
            if _unit(target) in FORBIDDEN.get(unit, ()) and (unit, target) not in ALLOWED:
                bad.append(f"{rel} imports {target}")
    assert bad == []


def test_the_check_sees_relative_imports() -> None:
    """The reader above resolves ``from ..events import X`` (else it would pass vacuously)."""
    found = imports(ROOT / "cp" / "nat_info.py")
    assert "ikecp.events" in found and "ikecp.cp.registry" in found
    assert "ikecp.cp.registry" in imports(ROOT / "engine" / "settings.py")


@pytest.mark.parametrize(("module", "absent"), [
    ("ikecp.cp", ("ikecp.engine", "ikecp.roles")),
    ("ikecp.events", ("ikecp.engine", "ikecp.cp", "ikecp.roles")),
    ("ikecp.engine", ("ikecp.roles", "ikecp.net", "ikecp.config")),
    ("ikecp", ("ikecp.roles", "ikecp.engine", "ikecp.config")),  # the API loads on first use
])
def test_importing_a_layer_loads_nothing_above_it(module: str, absent: tuple[str, ...]) -> None:
    code = (f"import sys, {module}; print(sorted(m for m in sys.modules "
            f"if m.startswith({absent!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
