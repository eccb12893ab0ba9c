"""The design's rules that code review alone would let slip: import direction, one reader of the
environment, one source of time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["bot", "scheduler", "agent", "tools", "venues", "storage"]
ALLOWED = {
    "venues": {"venues"},
    "storage": {"storage", "venues"},
    "tools": {"tools", "venues", "storage"},
    "agent": {"agent", "tools", "venues", "storage"},
    "scheduler": {"scheduler", "agent", "tools", "venues", "storage"},
    "bot": set(PACKAGES),
}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations/versions" not in p.as_posix())


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) - ALLOWED[package])
        for path in _modules(package)
        if _imported_packages(path) - ALLOWED[package]
    }
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "bot"])
def test_only_bot_reads_the_environment(package: str) -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in _modules(package)
        if any(token in path.read_text() for token in ("os.environ", "os.getenv", "BaseSettings", "load_dotenv"))
    ]
    assert not offenders


def test_no_wall_clock_outside_the_clock() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in _modules(package)
        if path.name != "clock.py"
        and any(t in path.read_text() for t in ("datetime.now(", "datetime.utcnow(", "time.time(", "date.today("))
    ]
    assert not offenders
