"""Import-layer check: the package's layers import one way and no module imports itself through others.

    python -m emotion_agent.evals.layers

Layers, bottom to top: ``tools`` (experts, evidence, media, assets, settings) → ``agent`` (graph, fusion,
explanation, memory, LLM) → ``service`` (HTTP) → ``evals`` (which may drive the service) → ``web`` (the analyst pages, which read
eval runs and mount on the service) → ``cli``. A module may import its own layer and the
layers below it, never one above. Every import counts, including those inside functions, and the
module graph (all imports) must have no cycle. Exit 1 with the offending edges otherwise.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "emotion_agent"
RANK = {"tools": 0, "agent": 1, "service": 2, "evals": 3, "training": 3.2, "benchmarks": 3.2, "web": 3.5, "cli": 4,
        "devtools": 5, "console": 0, "__init__": 4, "__main__": 5}
#: Pairs of layers that must not import each other even though their ranks would allow it.
FORBIDDEN_SIDEWAYS: set[tuple[str, str]] = set()


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of a source file under the package root."""
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every ``emotion_agent.*`` module this file imports (anywhere in it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith(PACKAGE):
                out.add(mod)
                out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def layer(module: str) -> str:
    """The layer a module belongs to (its first component under the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def check(root: Path) -> list[str]:
    """Problems found: upward or sideways imports, and import cycles."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    problems: list[str] = []
    for name, path in files.items():
        targets = {t for t in imports_of(path, name) if t in files}
        graph[name] = targets
        for t in targets:
            a, b = layer(name), layer(t)
            if a == b:
                continue
            if RANK.get(b, 0) > RANK.get(a, 0) or (a, b) in FORBIDDEN_SIDEWAYS:
                problems.append(f"layer: {name} ({a}) imports {t} ({b})")
    # cycles (Tarjan's strongly connected components)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                problems.append("cycle: " + " <-> ".join(sorted(comp)))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return problems


def main() -> int:
    """Check the package's layers; exit 1 with the offending edges."""
    root = Path(__file__).resolve().parent.parent
    problems = check(root)
    for p in problems:
        print(p)
    print(f"{len(problems)} layering problem(s) in {root}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
