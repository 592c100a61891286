"""The dependency rule of the README's layout, read from the source: which folder imports which."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
OURS = (
    "loyal", "features", "models", "samplebank", "training", "inference", "campaigns",
    "reports", "pipelines", "serving", "monitoring", "decisions", "simulation",
)  # fmt: skip

MODULE_LEVEL: dict[str, set[str]] = {
    "loyal": set(),
    "features": {"loyal"},
    "models": {"loyal"},
    "monitoring": {"loyal", "features"},
    "decisions": {"loyal", "models"},
    "samplebank": {"loyal", "features"},
    "training": {"loyal", "features", "models", "decisions", "monitoring", "samplebank"},
    "inference": {"loyal", "features", "models"},
    "campaigns": {"loyal", "features", "models", "inference", "training"},
    "reports": {"loyal", "features", "models", "inference", "training"},
    "pipelines": set(OURS) - {"serving"},
    "serving": {"loyal", "features", "models", "decisions", "monitoring", "inference"},
    "simulation": set(OURS) - {"pipelines"},
}
"""What each folder may import when its modules load (the README's "may import" column)."""

NEVER: dict[str, set[str]] = {
    "features": set(OURS) - {"features", "loyal"},
    "models": set(OURS) - {"models", "loyal"},
    "serving": {"training", "pipelines", "campaigns", "reports", "samplebank", "simulation"},
    "decisions": set(OURS) - {"decisions", "loyal", "models"},
    "inference": set(OURS) - {"inference", "loyal", "features", "models"},
}
"""Imports a folder never makes, not even inside a function."""


def imports(package: str) -> tuple[set[str], set[str]]:
    """Our other folders `package` imports: (at module level, anywhere)."""
    top: set[str] = set()
    anywhere: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for root in {name.split(".")[0] for name in names} & set(OURS) - {package}:
                anywhere.add(root)
                if id(node) in module_level:
                    top.add(root)
    return top, anywhere


@pytest.mark.parametrize("package", OURS)
def test_each_folder_imports_only_what_the_layout_allows(package: str) -> None:
    top, anywhere = imports(package)
    assert top <= MODULE_LEVEL[package], f"{package} imports {sorted(top - MODULE_LEVEL[package])}"
    forbidden = anywhere & NEVER.get(package, set())
    assert not forbidden, f"{package} imports {sorted(forbidden)}"
