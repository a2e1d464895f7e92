"""The layout (DESIGN.md, "Conventions"): imports run one way. Read from the source with
``ast`` (nothing is imported), every import counted, those inside functions and ``TYPE_CHECKING``
blocks too:

- no circle among the modules of ``inpaint_app``;
- a pipeline (a user's command) imports only the library: no other pipeline (``pipelines/cli.py``
  dispatches by name), no lab tooling;
- lab tooling (``benchmarks``) imports the library, never a pipeline (a user command it needs runs
  as its own process);
- the library never imports a pipeline or lab tooling;
- ``inpaint_app/flows`` stands alone: it imports nothing of ``inpaint_app`` outside itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("inpaint_app", "pipelines", "benchmarks")
# One-off experiment scripts (run as files, not modules of the package) that still reach into a
# pipeline: they record how a result was measured. The list may shrink, never grow.
EXPERIMENTS_INTO_PIPELINES = {
    "benchmarks.experiments.fashion_content_level": ["pipelines.ood_eval"],
    "benchmarks.experiments.mnist_canonical": ["pipelines.ood_eval", "pipelines.train"],
    "benchmarks.experiments.mnist_two_densities": ["pipelines.ood_eval"],
    "benchmarks.experiments.orientation_turns": ["pipelines.ood_eval"],
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    return {module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


MODULES = find_modules()


def resolve(name: str) -> str:
    """``name`` if it is a module of ours, else the nearest module above it (``pkg.mod.Class`` ->
    ``pkg.mod``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(name: str) -> set[str]:
    """The modules of ours that module ``name`` imports, anywhere in its source."""
    path = MODULES[name]
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``from pkg import name``: the submodule pkg.name when there is one, else pkg.
            targets = [f"{stem}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                module = resolve(target)
                if module and module != name:
                    found.add(module)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path that returns to its start) per strongly connected component with more
    than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [cycle_in(graph, component) for component in components]


def cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, within it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_the_graph_sees_every_kind_of_import() -> None:
    """The parser itself: absolute, relative, package-relative and in-function imports."""
    assert "inpaint_app.trainer" in MODULES and "pipelines.train" in MODULES
    assert "inpaint_app.trainer" in GRAPH["pipelines.train"]  # absolute
    assert "inpaint_app.training" in GRAPH["inpaint_app.trainer"]  # relative
    assert "inpaint_app.folder_bundle" in GRAPH["pipelines.train"]  # inside a function
    assert "inpaint_app.flows" in GRAPH["inpaint_app.models"] or any(
        m.startswith("inpaint_app.flows") for m in GRAPH["inpaint_app.models"])
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_circle_among_library_modules() -> None:
    library = {name: {m for m in imports if m.startswith("inpaint_app")}
               for name, imports in GRAPH.items() if name.startswith("inpaint_app")}
    cycles = find_cycles(library)
    assert not cycles, "import circles in inpaint_app:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles)


def imports_into(source: str, targets: tuple[str, ...]) -> dict[str, list[str]]:
    """The modules of package ``source`` that import a module of ``targets``, and which."""
    wrong = {name: sorted(m for m in imports if m.split(".")[0] in targets)
             for name, imports in GRAPH.items() if name.split(".")[0] == source}
    return {name: found for name, found in wrong.items() if found}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("pipelines.")))
def test_a_pipeline_imports_only_the_library(name: str) -> None:
    others = sorted(m for m in GRAPH[name] if m.split(".")[0] in ("pipelines", "benchmarks"))
    assert not others, f"{MODULES[name].relative_to(ROOT)} imports {others}"


def test_lab_tooling_imports_no_pipeline() -> None:
    assert "benchmarks.gpu_run" in MODULES and "benchmarks.experiments.mnist_canonical" in MODULES
    assert imports_into("benchmarks", ("pipelines",)) == EXPERIMENTS_INTO_PIPELINES


def test_the_library_imports_no_pipeline_and_no_lab_tooling() -> None:
    assert not imports_into("inpaint_app", ("pipelines", "benchmarks"))


def test_user_commands_and_lab_tooling_live_apart() -> None:
    """What moved to ``benchmarks`` (issue 37) is gone from ``pipelines``, and every subcommand
    of ``flowpaint`` is a user's command."""
    from pipelines.cli import COMMANDS, LAB_COMMANDS

    lab = {"benchmark", "gpu_bench", "gpu_run", "gpu_home", "time_to_quality", "families",
           "inpaint_benchmark", "toy2d", "pack_data", "results"}
    assert not {f"pipelines.{m}" for m in lab} & set(MODULES)
    assert {f"benchmarks.{m}" for m in lab} <= set(MODULES)
    assert all(module.split(".")[0] != "benchmarks" for module, _ in COMMANDS.values())
    assert set(LAB_COMMANDS.values()) <= set(MODULES) and not set(LAB_COMMANDS) & set(COMMANDS)


def test_flows_import_nothing_of_the_library_outside_flows() -> None:
    wrong = {name: sorted(m for m in imports if m.startswith("inpaint_app")
                          and not m.startswith("inpaint_app.flows"))
             for name, imports in GRAPH.items() if name.startswith("inpaint_app.flows")}
    assert not {k: v for k, v in wrong.items() if v}
