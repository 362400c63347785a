"""Import direction between layers, read from the source with ast (nothing is imported)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level modules imported by each .py file under ``package``, by relative path."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("training", {"gradio"}),
    ("storage", {"gradio", "torch", "transformers"}),
    ("studio", {"sqlite3", "sqlite_utils"}),
])
def test_package_does_not_import_a_layer_it_must_not_know(package, forbidden):
    offenders = {
        path: sorted(names & forbidden)
        for path, names in imported_modules(package).items()
        if names & forbidden
    }
    assert offenders == {}
