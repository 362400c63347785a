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


ALLOWED = {
    "training.core": set(),
    "training.data": {"training.core"},
    "training.models": {"training.core"},
    "training.tuning": {"training.core", "training.models"},
    "training.inference": {"training.core", "training.data", "training.models", "training.tuning"},
    "training.export": {"training.core", "training.models", "training.inference", "storage"},
    "training.jobs": {"training.core", "training.data", "training.models", "training.tuning",
                      "storage"},
    "training.cli": {"training.core", "training.data", "training.models", "training.tuning",
                     "training.inference", "training.export", "training.jobs", "storage"},
    "storage": {"training.core"},
}
"""Which other layers each layer may import (lazy imports inside functions count too)."""


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "training" and len(parts) > 1:
        return f"training.{parts[1]}"
    return parts[0] if parts[0] in ("storage", "studio") else None


def imported_project_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if layer_of(name)}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_the_layers_below_it(layer):
    folder = ROOT.joinpath(*layer.split("."))
    offenders = {}
    for path in sorted(folder.rglob("*.py")):
        used = {layer_of(name) for name in imported_project_modules(path)} - {layer}
        if used - ALLOWED[layer]:
            offenders[str(path.relative_to(ROOT))] = sorted(used - ALLOWED[layer])
    assert offenders == {}


def test_every_training_module_belongs_to_a_layer():
    loose = sorted(p.name for p in (ROOT / "training").glob("*.py") if p.name != "__init__.py")
    packages = {p.name for p in (ROOT / "training").iterdir() if (p / "__init__.py").is_file()}
    assert loose == []
    assert {f"training.{name}" for name in packages} == set(ALLOWED) - {"storage"}


def test_no_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for folder in ("training", "storage", "studio")
            for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}
