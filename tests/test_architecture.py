"""The package's shape holds: imports run down the layers of the README's map, never up, and no cycles."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "retriever"
# The README's "Where things live", top to bottom: a module may import its own row and the rows above.
LAYERS = [
    {"errors", "files", "config", "version"},
    {"normalize", "corpus", "privacy", "validity", "markup"},
    {"encoders"},
    {"lexical", "scoring", "results", "filters", "judge"},
    {"store"},
    {"search", "judge_training", "self_calibration", "evaluation", "evaluation_report", "pipeline", "cascade",
     "gate", "reload", "registry"},
    {"editorial"},
    {"batch"},
    {"integrations"},
    {"http"},
    {"cli", "__main__", "__init__"},
]


def _part(module: str) -> str:
    """'retriever.store.build' -> 'store'; 'retriever' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(part: str) -> int:
    for number, members in enumerate(LAYERS):
        if part in members:
            return number
    raise AssertionError(f"retriever/{part} is not in the README's map (tests/test_architecture.py LAYERS)")


def _imports(path: Path) -> set[str]:
    """Absolute names of the retriever modules that ``path`` imports."""
    module = "retriever." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("retriever"):
                found.add(name)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("retriever")}
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down_the_layers(path):
    own = _part("retriever." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    for imported in _imports(path):
        if _part(imported) != own:
            assert _layer(_part(imported)) <= _layer(own), f"{path.name} imports {imported}, a layer above it"


def test_no_import_cycles_between_parts():
    edges = {}
    for path in MODULES:
        own = _part("retriever." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        edges.setdefault(own, set()).update(_part(m) for m in _imports(path) if _part(m) != own)
    for start in edges:
        stack, seen = list(edges[start]), set()
        while stack:
            node = stack.pop()
            assert node != start, f"an import cycle runs through retriever/{start}"
            if node not in seen:
                seen.add(node)
                stack.extend(edges.get(node, ()))
