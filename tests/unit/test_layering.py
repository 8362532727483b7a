"""The input layer stays below the providers: enforced on the import graph, not by review.

The input layer (manifest readers, sniffing, validation, read-ahead, the item
values) checks files against a provider's `Capabilities`; it must not import
the provider adapters (`ingest.providers`), the settings schema
(`ingest.config`) or the HTTP stack (`aiohttp`). The emulator (`ingest.sim`)
must not import the client's sniffing (`ingest.sniff`), so it cannot agree
with a client sniffing bug (it has its own table, `ingest.sim.magic`).

How it works: each module's source is parsed (no import runs) and every
``import`` in it is followed, including those inside functions and under
``TYPE_CHECKING``, and the parent packages whose ``__init__`` an import
runs. The root ``ingest/__init__.py`` is not followed: it is the library's
front door, which may import anything, and the rule is about what the layer
itself asks for.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

import ingest

INPUT_LAYER = (
    "ingest.manifest",
    "ingest.sniff",
    "ingest.validate",
    "ingest.prefetch",
    "ingest.item",
    "ingest.capabilities",
)
INPUT_FORBIDDEN = ("ingest.providers", "ingest.config", "aiohttp")


@dataclass(frozen=True, slots=True)
class Edge:
    """`importer` imports `imported` (a module of the package, or any outside name)."""

    importer: str
    imported: str


class ImportGraph:
    """The modules reachable by import from some start modules, within one package on disk."""

    def __init__(self, root: Path, package: str) -> None:
        self.root = root  # the package's directory
        self.package = package

    def module_file(self, name: str) -> Path | None:
        """The file of module `name` of the package, or None (an outside name or an attribute)."""
        parts = name.split(".")
        if parts[0] != self.package:
            return None
        base = self.root.joinpath(*parts[1:])
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        if base.with_suffix(".py").is_file() and len(parts) > 1:
            return base.with_suffix(".py")
        return None

    def submodules(self, name: str) -> list[str]:
        """`name` and, for a package, every module under it."""
        path = self.module_file(name)
        if path is None:
            raise ValueError(f"no module {name} under {self.root}")
        if path.name != "__init__.py":
            return [name]
        found = [name]
        for child in sorted(path.parent.rglob("*.py")):
            rel = child.relative_to(path.parent).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if parts:
                found.append(".".join((name, *parts)))
        return found

    def imports(self, name: str) -> set[str]:
        """Every name module `name` imports (``from a import b`` gives both a and a.b)."""
        path = self.module_file(name)
        assert path is not None
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        return found

    def edges(
        self, start: Iterable[str], stop: Callable[[str], bool] = lambda name: False
    ) -> list[Edge]:
        """Every import edge of the modules reachable from `start` (its packages expanded).

        A module for which `stop` is true is not walked into (its own imports are not listed).
        """
        todo = [module for name in start for module in self.submodules(name)]
        seen = set(todo)
        edges: list[Edge] = []
        while todo:
            module = todo.pop()
            for imported in sorted(self.imports(module)):
                edges.append(Edge(module, imported))
                for reached in self._modules_run_by(imported):
                    if reached not in seen and not stop(reached):
                        seen.add(reached)
                        todo.append(reached)
        return edges

    def _modules_run_by(self, imported: str) -> list[str]:
        """The package's modules that importing `imported` runs: it and its parents, not the root."""
        if self.module_file(imported) is None:
            return []
        parts = imported.split(".")
        return [".".join(parts[:n]) for n in range(2, len(parts) + 1)]


def violations(graph: ImportGraph, start: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    """ "a imports b" for each import of a forbidden name (forbidden modules are not walked)."""
    banned = tuple(forbidden)

    def is_banned(name: str) -> bool:
        return any(name == ban or name.startswith(ban + ".") for ban in banned)

    return sorted(
        f"{edge.importer} imports {edge.imported}"
        for edge in graph.edges(start, stop=is_banned)
        if is_banned(edge.imported)
    )


PACKAGE = ImportGraph(Path(ingest.__file__).parent, "ingest")


def test_the_input_layer_imports_no_provider_setting_or_http_module() -> None:
    assert violations(PACKAGE, INPUT_LAYER, INPUT_FORBIDDEN) == []


def test_the_emulator_does_not_share_the_clients_sniffing() -> None:
    assert violations(PACKAGE, ["ingest.sim"], ["ingest.sniff"]) == []


def test_the_input_layer_is_what_the_graph_walks() -> None:
    """The walk reaches the modules it should: a renamed module cannot leave the rule vacuous."""
    reached = {edge.importer for edge in PACKAGE.edges(INPUT_LAYER)}
    assert {
        "ingest.manifest.reader",
        "ingest.manifest.probe",
        "ingest.validate",
        "ingest.sniff",
        "ingest.errors",
    } <= reached


# --- the checker itself, on a package made up for the test -------------------------------


def write_package(root: Path, files: dict[str, str]) -> ImportGraph:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return ImportGraph(root / "pkg", "pkg")


@pytest.mark.parametrize(
    ("files", "found"),
    [
        pytest.param(
            {"low.py": "import aiohttp\n"},
            ["pkg.low imports aiohttp"],
            id="direct",
        ),
        pytest.param(
            {"low.py": "def f():\n    from aiohttp import web\n"},
            ["pkg.low imports aiohttp", "pkg.low imports aiohttp.web"],
            id="inside-a-function",
        ),
        pytest.param(
            {"low.py": "from . import mid\n", "mid.py": "from .high import settings\n"},
            ["pkg.mid imports pkg.high", "pkg.mid imports pkg.high.settings"],
            id="relative-and-transitive",
        ),
        pytest.param(
            {
                "low.py": "import pkg.sub.leaf\n",
                "sub/__init__.py": "from pkg.high import x\n",
                "sub/leaf.py": "",
            },
            ["pkg.sub imports pkg.high", "pkg.sub imports pkg.high.x"],
            id="a-parent-package-init",
        ),
        pytest.param(
            {"low.py": "import pkg.highway\nimport aiohttpx\n"},
            [],
            id="a-prefix-is-not-a-match",
        ),
    ],
)
def test_the_checker_finds_forbidden_imports(
    tmp_path: Path, files: dict[str, str], found: list[str]
) -> None:
    graph = write_package(tmp_path, {"__init__.py": "", "high.py": "", **files})
    assert violations(graph, ["pkg.low"], ["aiohttp", "pkg.high"]) == found


def test_the_checker_expands_a_package_to_all_its_modules(tmp_path: Path) -> None:
    graph = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "high.py": "",
            "low/__init__.py": "",
            "low/deep/x.py": "import aiohttp",
        },
    )
    assert violations(graph, ["pkg.low"], ["aiohttp"]) == ["pkg.low.deep.x imports aiohttp"]
