"""The layers of runs/ (docs/ARCHITECTURE.md) hold: no module imports across their lines.

Imports are read from the source with ast (every `import` and `from ... import`, inside
functions too), resolved to module names, and checked against the rules below. A new
module lands in a layer by its path, so it is checked from the day it is added.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "runs"

# The library an executor imports: no Django, no other layer of the app.
LIBRARY = {
    "runs.contract",
    "runs.memory",
    "runs.recorder",
    "runs.client",
    "runs.buffered",
    "runs.costs",
}
# Modules the library may import besides the standard library.
LIBRARY_MAY_IMPORT = LIBRARY | {"runs.jsontext", "runs.durations", "runs.formats"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def app_modules() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if "migrations" not in p.parts)


def imports_of(path: Path) -> set[str]:
    """Every module this file imports, absolute (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # "from . import views" imports the module runs.x.views; "from .contract
                # import SkillRun" imports runs.contract.
                submodule = f"{target}.{alias.name}"
                found.add(submodule if is_module(submodule) else target)
    return found


def layer(module: str) -> str:
    for prefix, name in (
        ("runs.access", "access"),
        ("runs.web", "web"),
        ("runs.api", "api"),
        ("runs.management", "management"),
        ("runs.admin", "admin"),
        ("runs.services", "services"),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return name
    if module in LIBRARY:
        return "library"
    return "core"


# Which layer may not import which: faces never import each other or the commands;
# services and the storage layer (core) import no face.
FORBIDDEN = {
    # Who gets in (hashed tokens, lockout, throttles): used by the site's settings and the
    # API's authentication; it reads no run and imports no face.
    "access": {"web", "api", "management", "admin", "services"},
    "web": {"api", "management", "admin"},
    "api": {"web", "management", "admin"},
    "admin": {"web", "api", "management"},
    "services": {"web", "api", "management", "admin"},
    "core": {"web", "api", "management", "admin", "services"},
    "management": {"web", "api", "admin"},
}
# The storage layer calls one workflow: DjangoStorage.purge_older_than is the purge.
ALLOWED_EXCEPTIONS = {("runs.storage", "runs.services.purge")}


def crossings() -> list[str]:
    problems = []
    for path in app_modules():
        source = module_name(path)
        source_layer = layer(source)
        for target in sorted(imports_of(path)):
            if not target.startswith("runs"):
                if source_layer == "library" and target.split(".")[0] in {
                    "django",
                    "rest_framework",
                }:
                    problems.append(f"{source} (library) imports {target}")
                continue
            if (source, target) in ALLOWED_EXCEPTIONS:
                continue
            if source_layer == "library" and target not in LIBRARY_MAY_IMPORT | {"runs"}:
                problems.append(f"{source} (library) imports {target}")
            if layer(target) in FORBIDDEN.get(source_layer, set()):
                problems.append(f"{source} ({source_layer}) imports {target} ({layer(target)})")
    return problems


def test_no_module_imports_across_the_layers():
    assert crossings() == []


def test_raw_sql_stays_in_the_storage_layer():
    """cursor() calls are the storage layer's (managers, lookups) and the migrations'."""
    # runs.routing asks a replica for its replay lag on the replica's own connection.
    allowed = {"runs.managers", "runs.lookups", "runs.storage", "runs.routing"}
    offenders = [
        module_name(path)
        for path in app_modules()
        if ".cursor(" in path.read_text() and module_name(path) not in allowed
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "source,text,expected",
    [
        ("runs/api/x.py", "from ..web import views\n", "runs.api.x (api) imports runs.web"),
        ("runs/web/x.py", "from runs.api import views\n", "runs.web.x (web) imports runs.api"),
        ("runs/contract.py", "import django.db\n", "runs.contract (library) imports django.db"),
    ],
)
def test_the_check_sees_a_crossing(tmp_path, monkeypatch, source, text, expected):
    """The checker itself: a file that crosses a line is reported."""
    fake_root = tmp_path
    path = fake_root / source
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "ROOT", fake_root)
    monkeypatch.setattr(module, "APP", fake_root / "runs")
    assert any(line.startswith(expected) for line in crossings())
