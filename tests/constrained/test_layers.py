"""constrained/ stays in its three layers (see its __init__): the import graph of the package,
type-hint and function-level imports included, has no cycle; automata/ imports nothing above it;
schema/ imports only itself, automata/ and errors; no module imports another's private name."""
from __future__ import annotations

import ast
from pathlib import Path

import radixgen.constrained

ROOT = Path(radixgen.constrained.__file__).parent


def _imports() -> dict[str, set[tuple[str, str]]]:
    """module (path under constrained/, dotted, no suffix) -> {(imported module, name)}."""
    mods = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in ROOT.rglob("*.py")}
    out: dict[str, set[tuple[str, str]]] = {}
    for mod, path in mods.items():
        package = mod.split(".")[:-1]
        found = out.setdefault(mod, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("radixgen.constrained."):
                target = node.module.removeprefix("radixgen.constrained.")
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}".lstrip(".")
                found.add((sub, "") if sub in mods else (target, alias.name))
    return out


def _layer(mod: str) -> str:
    return mod.split(".")[0] if "." in mod else "top"


def test_no_import_cycles() -> None:
    graph = {m: {t for t, _ in ts if not t.endswith("__init__") and t} for m, ts in _imports().items()}
    state: dict[str, int] = {}

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for nxt in graph.get(mod, ()):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(path[path.index(nxt):] + [mod, nxt])
            if nxt not in state:
                visit(nxt, path + [mod])
        state[mod] = 2

    for mod in graph:
        if mod not in state:
            visit(mod, [])


def test_layers_import_one_way() -> None:
    allowed = {"automata": {"automata"}, "schema": {"schema", "automata"}}
    for mod, targets in _imports().items():
        for target, _ in targets:
            layer = _layer(mod)
            if layer in allowed and target != "errors":
                assert _layer(target) in allowed[layer], f"{mod} ({layer}/) imports {target}"


def test_no_private_names_across_modules() -> None:
    for mod, targets in _imports().items():
        private = sorted(f"{t}.{name}" for t, name in targets if name.startswith("_"))
        assert not private, f"{mod} imports private names {private}"
