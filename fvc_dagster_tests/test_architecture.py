"""The package's import graph: the library by stage, each stage importing only the ones below it,
no cycles, no module name used twice; Dagster only in `defs/`. `python -m
fvc_dagster_tests.test_architecture` prints the picture in numbers."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import fvc_dagster

PACKAGE = Path(fvc_dagster.__file__).parent
# Bottom to top. The root modules (atomic files, frame arrays, locks, the Parquet warehouse) are
# shared by every stage; a stage imports the root and the stages before it.
LIB_STAGES = ("ingest", "clips", "features", "models", "evaluation", "training", "serving")
DEFS_STAGES = ("ingest", "clips", "features", "folds", "models", "evaluation", "serving")
# `defs/` modules every stage's assets build on; they import no stage.
DEFS_FOUNDATION = (
    "batching", "partitions", "resources", "warehouse", "automation", "recovery", "jobs",
)  # fmt: skip
# Above `lib` and `defs`: the code location, the CLI, the Celery preload, the demo package.
TOP = ("definitions", "cli", "worker_preload", "local")


def modules() -> dict[str, Path]:
    """Dotted name (without the package) of every module, packages' `__init__` as the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules `name` imports, at any depth of its code."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target == "fvc_dagster" or not target.startswith("fvc_dagster."):
                continue
            target = target.removeprefix("fvc_dagster.")
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def layer(name: str) -> tuple[int, int] | None:
    """(tier, stage) of a module: lib root, lib stages, defs foundation, defs stages, the rest;
    None for package markers."""
    parts = name.split(".")
    if parts[0] == "lib":
        if len(parts) == 1:
            return None
        if len(parts) == 2 and parts[1] not in LIB_STAGES:
            return (0, 0)
        return (1, LIB_STAGES.index(parts[1]))
    if parts[0] == "defs":
        if len(parts) == 1:
            return None
        if parts[1] in DEFS_FOUNDATION:
            return (2, 0)
        if parts[1] in DEFS_STAGES:
            return (3, DEFS_STAGES.index(parts[1]))
        return (4, 0)  # jobs, scale-out profiles: over every stage
    return (5, 0)


def floors(edges: dict[str, set[str]]) -> dict[str, int]:
    """Each module's floor: 0 for a module importing none of the package, else one above the
    highest it imports."""
    memo: dict[str, int] = {}

    def floor(name: str) -> int:
        if name not in memo:
            memo[name] = 1 + max((floor(n) for n in edges[name]), default=-1)
        return memo[name]

    return {name: floor(name) for name in edges}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for nxt in sorted(edges[name]):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    return found


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a module to one in a higher layer (or a later stage of its tier)."""
    return sorted(
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)
    )


def test_the_import_graph_has_no_cycles():
    assert cycles(graph()) == []


def test_no_module_imports_one_above_it():
    assert upward(graph()) == []


def test_every_library_module_lives_in_the_root_or_one_stage_folder():
    for name in modules():
        parts = name.split(".")
        if parts[0] == "lib" and len(parts) > 2:
            assert parts[1] in LIB_STAGES, f"{name}: no stage folder {parts[1]!r}"
            assert len(parts) == 3, f"{name}: nested below its stage folder"


def test_no_two_library_modules_share_a_name():
    leaves = collections.Counter(
        name.rpartition(".")[2] for name in modules() if name.startswith("lib.")
    )
    assert {leaf for leaf, count in leaves.items() if count > 1} == set()


def test_the_library_never_imports_dagster():
    for name, path in modules().items():
        if name.startswith("lib"):
            tree = ast.parse(path.read_text())
            used = {
                alias.name.split(".")[0]
                for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in (
                    node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
                )
            }
            assert not used & {"dagster", "dagster_duckdb"}, name


def picture() -> str:
    edges = graph()
    lib = {n: e for n, e in edges.items() if n.startswith("lib.")}
    lib_edges = sum(1 for n, e in lib.items() for t in e if t.startswith("lib."))
    per_folder = collections.Counter(
        n.rpartition(".")[0]
        for n, p in modules().items()
        if n.startswith("lib.") and p.name != "__init__.py"
    )
    lib_floors = floors({n: {t for t in e if t.startswith("lib.")} for n, e in lib.items()})
    return "\n".join(
        [
            f"modules: {len(edges)}, imports between them: {sum(map(len, edges.values()))}",
            f"lib: {sum(per_folder.values())} modules, {lib_edges} imports, "
            f"{1 + max(lib_floors.values())} floors",
            *(f"  {folder}: {count}" for folder, count in sorted(per_folder.items())),
            f"cycles: {len(cycles(edges))}, imports running up: {len(upward(edges))}",
        ]
    )


if __name__ == "__main__":
    print(picture())
