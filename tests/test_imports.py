"""The package's import graph: no circle, and the router (``cln/node.py``)
imported only by ``cln/plugin.py`` (the role adapters see the node through
``cln/role.py``'s ``Host``).

The graph is read from the source (``ast``), not from ``sys.modules``, so an
import inside ``if TYPE_CHECKING:`` or a function counts as well. Importing
``a.b.c`` also runs ``a.b``'s ``__init__``: that edge counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from test_lsp_flow import net  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parent.parent / "plugin" / "asyncpay"
PACKAGE = "asyncpay"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _targets(name: str, tree: ast.AST) -> set[str]:
    """The package's modules ``name`` imports, directly or as a parent package."""
    here = name if _is_package(name) else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            named.add(base)
            # ``from pkg import sub`` imports the submodule when there is one.
            named.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    out = set()
    for target in named:
        if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
            continue
        # a.b.c runs a.b's __init__ first, unless a.b is one of our own packages (already running).
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            mod = ".".join(parts[:i])
            if mod in MODULES and mod != name and not name.startswith(mod + "."):
                out.add(mod)
    return out


def _graph() -> dict[str, set[str]]:
    return {name: _targets(name, ast.parse(path.read_text(), str(path))) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it (first == last), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = GREY
        stack.append(n)
        for m in sorted(graph[n]):
            if color[m] == GREY:
                return [*stack[stack.index(m):], m]
            if color[m] == WHITE and (found := visit(m)):
                return found
        stack.pop()
        color[n] = BLACK
        return None

    for n in sorted(graph):
        if color[n] == WHITE and (found := visit(n)):
            return found
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = _graph()
    assert "asyncpay.cln.node" in graph["asyncpay.cln.plugin"]  # from .node import Node
    assert "asyncpay.cln.role" in graph["asyncpay.cln.hold"]  # from .role import ...
    assert "asyncpay.config" in graph["asyncpay.payer.config"]  # from ..config import option
    assert "asyncpay.hold" in graph["asyncpay.cln.hold"]  # from ..hold.holder runs hold/__init__


def test_the_cycle_finder_reports_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_only_plugin_imports_the_router():
    graph = _graph()
    importers = sorted(n for n, targets in graph.items() if "asyncpay.cln.node" in targets)
    assert importers == ["asyncpay.cln.plugin"]


def test_role_configs_take_option_from_the_shared_module():
    graph = _graph()
    for role in ("lsp", "recipient", "payer", "hold"):
        assert "asyncpay.config" in graph[f"asyncpay.{role}.config"], role
        assert "asyncpay.lsp.config" not in graph[f"asyncpay.{role}.config"] or role == "lsp", role


# Each module imported first, with none of the package loaded before it (in
# one fresh interpreter: the package's modules are dropped between two).
_IMPORT_EACH = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "asyncpay" or m.startswith("asyncpay.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed.append(name + ": " + traceback.format_exc(limit=-3))
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first():
    # __main__ modules run their command when imported.
    names = [n for n in sorted(MODULES) if not n.endswith(".__main__")]
    run = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *names], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_node_offers_every_member_of_host(net):  # noqa: F811
    from asyncpay.cln.role import Host

    _, _, _, _, node = net
    members = set(Host.__annotations__) | {n for n, v in vars(Host).items() if callable(v) and not n.startswith("_")}
    assert {"rpc", "store", "lock", "perform", "resolve_intro", "config_for"} <= members
    missing = sorted(m for m in members if not hasattr(node, m))
    assert not missing, f"Node lacks {missing}"
