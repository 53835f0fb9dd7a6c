"""Imports run one way (docs/architecture.md, "The direction of imports").

The check reads every module's source with ``ast`` (nothing is imported), so it sees imports at
module level, inside functions and under ``if TYPE_CHECKING:`` alike.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import rankscope

SRC = Path(rankscope.__file__).resolve().parent
REPO = SRC.parents[1]

#: Lowest first. A package may import its own modules and those of strictly lower layers.
LAYERS: list[set[str]] = [
    {"errors", "atomic", "stats"},
    {"config"},
    {"verdicts"},
    {"runstore"},
    {"data", "models"},
    {"train", "evaluate", "analysis"},
    {"plan", "predict"},
    {"sweep"},
    {"report", "tracking"},
    {"cli", "config_docs"},
]
FOUNDATIONS = LAYERS[0]  # may import each other (atomic raises errors' types)
#: Readers of a run directory: they must run on a laptop without torch.
READERS = {"report", "tracking", "runstore", "verdicts", "stats"}
READER_MAY_IMPORT = FOUNDATIONS | {"config", "verdicts", "runstore"}
HEAVY_LIBRARIES = {"torch", "transformers", "peft", "accelerate", "ray"}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name, e.g. rankscope.sweep.runner
    target: str  # dotted module imported, e.g. rankscope.report.tables or torch.nn
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, source: str | None = None) -> list[Import]:
    """Every import statement in the file (or in ``source``, as if it lived at ``path``), relative
    imports resolved to absolute names."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    text = path.read_text(encoding="utf-8") if source is None else source
    found: list[Import] = []
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from pkg import mod" imports pkg.mod; "from mod import name" is trimmed to mod later.
            found += [Import(name, f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def package_of(dotted: str) -> str | None:
    """The top-level rankscope package of a module (``rankscope.sweep.runner`` -> ``sweep``)."""
    parts = dotted.split(".")
    if parts[0] != "rankscope" or len(parts) < 2 or parts[1] not in set().union(*LAYERS):
        return None  # not rankscope, or a name of the root package (rankscope.__version__)
    return parts[1]


def layer_of(package: str) -> int:
    for index, members in enumerate(LAYERS):
        if package in members:
            return index
    raise KeyError(package)


def all_imports() -> list[Import]:
    return [imp for path in sorted(SRC.rglob("*.py")) for imp in imports_of(path)]


def violations(imports: list[Import]) -> list[str]:
    problems: list[str] = []
    for imp in imports:
        source = package_of(imp.importer)
        if source is None:  # rankscope/__init__.py
            continue
        target = package_of(imp.target)
        where = f"{imp.importer}:{imp.line} imports {imp.target}"
        if source in READERS and imp.target.split(".")[0] in HEAVY_LIBRARIES:
            problems.append(f"{where}: {source} reads run directories and must not import "
                            f"{imp.target.split('.')[0]}")
        if target is None or target == source:
            continue
        if source in READERS and target not in READER_MAY_IMPORT:
            problems.append(f"{where}: {source} may import only {sorted(READER_MAY_IMPORT)}")
            continue
        lower, upper = layer_of(target), layer_of(source)
        if lower > upper:
            problems.append(f"{where}: a lower layer ({source}) imports a higher one ({target})")
        elif lower == upper and not (source in FOUNDATIONS and target in FOUNDATIONS):
            problems.append(f"{where}: {source} and {target} share a layer and must not import each other")
    return problems


def test_import_direction_every_package_is_placed():
    """A new package must be given a layer (and a row in docs/architecture.md)."""
    packages = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    placed = set().union(*LAYERS)
    assert packages - placed == set(), f"place these in LAYERS: {sorted(packages - placed)}"
    assert placed - packages == set(), f"LAYERS names packages that do not exist: {sorted(placed - packages)}"
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    for package in packages:
        assert f"`{package}`" in doc, f"docs/architecture.md does not describe package {package!r}"


def test_import_direction_holds():
    problems = violations(all_imports())
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("importer, target, expected", [
    ("rankscope.evaluate.standalone", "rankscope.sweep.plan", "lower layer"),
    ("rankscope.sweep.summary", "rankscope.report.tables", "lower layer"),
    ("rankscope.report.tables", "rankscope.models.load", "may import only"),
    ("rankscope.report.html", "torch", "must not import torch"),
    ("rankscope.runstore.reader", "rankscope.analysis.spectral", "may import only"),
    ("rankscope.train.loop", "rankscope.evaluate.suite", "share a layer"),
    ("rankscope.cli", "rankscope.sweep.runner", None),
    ("rankscope.sweep.runner", "rankscope.runstore.writer", None),
    ("rankscope.atomic", "rankscope.errors", None),
])
def test_import_direction_rules_catch_each_kind_of_turn(importer, target, expected):
    """The checker itself: each kind of wrong turn is reported, allowed imports are not."""
    problems = violations([Import(importer, target, 1)])
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0]


def test_import_direction_sees_lazy_and_type_checking_imports():
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from rankscope.report.build import RunReport\n"
              "def f():\n    from ..sweep import plan\n")
    path = SRC / "data" / "_probe_for_test.py"
    found = {i.target for i in imports_of(path, source)}
    assert {"rankscope.report.build.RunReport", "rankscope.sweep.plan"} <= found


DOC_REFERENCE = re.compile(r"\b((?:docs/)[\w./-]+\.md|README\.md|[A-Z][A-Z_]+\.md)")


def test_docstring_references_resolve_inside_the_repository():
    """Every ``docs/*.md`` (or other ``*.md``) a source file names exists in the repository."""
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        for match in DOC_REFERENCE.finditer(path.read_text(encoding="utf-8")):
            if not (REPO / match.group(1)).exists():
                missing.append(f"{path.relative_to(REPO)}: {match.group(1)}")
    assert missing == [], "\n".join(missing)


def module_cycles(imports: list[Import]) -> list[list[str]]:
    """Import cycles between rankscope modules (strongly connected components of size > 1)."""
    modules = {module_name(p) for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        target = imp.target
        while target and target not in modules:  # "from pkg.mod import name" -> pkg.mod
            target = target.rpartition(".")[0]
        if target and target != imp.importer and imp.importer in graph:
            graph[imp.importer].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan 1972
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_import_direction_no_module_imports_itself_in_a_circle():
    """Within a package too (e.g. report's build -> html -> build under TYPE_CHECKING)."""
    assert module_cycles(all_imports()) == []


def test_import_direction_finds_a_planted_circle():
    planted = [Import("rankscope.report.build", "rankscope.report.html", 1),
               Import("rankscope.report.html", "rankscope.report.build", 1)]
    assert module_cycles(planted) == [["rankscope.report.build", "rankscope.report.html"]]


#: A module past this is doing two jobs (docs/architecture.md); split it by job, as tracking is.
MAX_MODULE_LINES = 500


def test_import_direction_modules_stay_small():
    long = {module_name(p): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"split these modules by job: {long}"
