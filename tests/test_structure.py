"""The shape of the code: imports flow one way, no file imports itself back, and the library's functions fit a screen.

Print the import graph (package by package, then file by file inside each package):

    .venv/bin/python tests/test_structure.py
"""

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lower layers never import higher ones. ``runtime`` (user errors, ranks) is imported by every layer; ``rewards`` and
# ``data_prep`` are the leaves a user extends; ``eval`` is the benchmark harness; ``reasoning_rl`` the trainers, which
# call ``eval`` for held-out evaluation; ``scripts`` compose everything.
LAYERS = {"runtime": 0, "rewards": 1, "tools": 1, "data_prep": 2, "eval": 3, "reasoning_rl": 4, "scripts": 5}
MAX_FUNCTION_LINES = 50  # in reasoning_rl/
MAX_OPTIMIZER_STEP_LINES = 25  # PolicyGradient.optimizer_step, docstring excluded


def module_files() -> dict[str, Path]:
    """``{"reasoning_rl.trainer": path, "scripts.bench.bench_efficiency": path, ...}`` for every project file."""
    files = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def import_graph() -> dict[str, set[str]]:
    """File -> the project files it imports (at the top or inside a function). A script importing another script by
    its bare name (``import train_grpo``, the scripts' folders are on ``sys.path``) counts as a scripts import."""
    files = module_files()
    scripts = {name.rsplit(".", 1)[-1]: name for name in files if name.startswith("scripts.")}
    graph = defaultdict(set)
    for name, path in files.items():
        graph[name]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                target = scripts.get(target, target)
                if target in files and target != name:
                    graph[name].add(target)
    # ``from pkg import mod`` names both pkg and pkg.mod: keep the most specific file
    return {name: {t for t in deps if not any(u.startswith(t + ".") for u in deps)} for name, deps in graph.items()}


def package_of(module: str) -> str:
    return module.split(".")[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a list of nodes (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out = defaultdict(set)
    for name, deps in graph.items():
        out[package_of(name)] |= {package_of(d) for d in deps if package_of(d) != package_of(name)}
    return out


def function_lengths(package: str = "reasoning_rl") -> dict[str, int]:
    """``{"file.py:Class.function": lines}`` for every function in ``package``, from ``def`` to its last line."""
    lengths = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        item.qualname = f"{node.name}.{item.name}"
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = getattr(node, "qualname", node.name)
                lengths[f"{path.relative_to(ROOT)}:{name}"] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_layer_imports_a_higher_one():
    upward = [f"{name} -> {dep}" for name, deps in import_graph().items() for dep in deps
              if LAYERS[package_of(dep)] > LAYERS[package_of(name)]]
    assert not upward, "imports against the layers " + str(LAYERS) + ":\n" + "\n".join(upward)


def test_no_import_cycle_between_files_or_packages():
    graph = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    packages = package_graph(graph)
    assert find_cycle(packages) is None, " -> ".join(find_cycle(packages))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_functions_fit_a_screen():
    too_long = {name: n for name, n in function_lengths().items() if n > MAX_FUNCTION_LINES}
    assert not too_long, too_long


def test_the_optimizer_step_reads_as_the_algorithm():
    import reasoning_rl.policy_gradient as pg

    tree = ast.parse(Path(pg.__file__).read_text())
    [step] = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "optimizer_step"]
    body_start = step.body[1].lineno if isinstance(step.body[0], ast.Expr) else step.body[0].lineno  # after the docstring
    lines = step.end_lineno - body_start + 1
    assert lines <= MAX_OPTIMIZER_STEP_LINES, lines
    source = ast.get_source_segment(Path(pg.__file__).read_text(), step)
    for phase in ("policy_loss(", ".backward()", "clip_and_step("):  # clip, and apply unless not finite
        assert phase in source, phase


if __name__ == "__main__":
    graph = import_graph()
    print("packages (each imports only what is listed after it):")
    for package, deps in sorted(package_graph(graph).items(), key=lambda kv: LAYERS[kv[0]]):
        print(f"  {package:<13} -> {', '.join(sorted(deps, key=LAYERS.get)) or '(nothing of the project)'}")
    print("\nfiles:")
    for name in sorted(graph, key=lambda n: (LAYERS[package_of(n)], n)):
        print(f"  {name} -> {', '.join(sorted(graph[name])) or '-'}")
    print("\nlongest functions in reasoning_rl/:")
    for name, n in sorted(function_lengths().items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {n:3d} lines  {name}")
    sys.exit(0)
