"""The import directions of the package (docs/development.md, "What may import what").

Reads every module under ``src/gear`` with :mod:`ast`, imports inside functions and
``TYPE_CHECKING`` blocks included (a lazy import is still a dependency), and checks the rules
below. A rule names modules by dotted prefix: ``gear.server.broker`` means the package and every
module in it. The rules say which way data and calls flow: down from the front-ends and the
server to the sans-I/O core, never back up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "gear"

#: Modules that do I/O or concurrency; the sans-I/O layers import none of them.
IO_MODULES = ("socket", "ssl", "threading", "asyncio", "selectors", "select", "concurrent")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(name: str) -> bool:
    return (SRC / Path(*name.split(".")) / "__init__.py").is_file()


def is_module(name: str) -> bool:
    return is_package(name) or (SRC / Path(*name.split("."))).with_suffix(".py").is_file()


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> Iterator[tuple[str, int]]:
    """Every module ``name`` imports, with the line: ``gear.x`` for the package's own modules,
    ``gear`` for a name taken from the package face, the top-level name for anything else."""
    path = MODULES[name]
    yield from imports_in(path.read_text(), name, path.name == "__init__.py")


def imports_in(source: str, name: str, is_init: bool = False) -> Iterator[tuple[str, int]]:
    """The imports of ``source`` as module ``name`` (see :func:`imports_of`)."""
    tree = ast.parse(source)
    package = name if is_init else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _own(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if not source.startswith("gear"):
                yield source.partition(".")[0], node.lineno
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                # "from gear.x import y" imports the module gear.x.y when there is one.
                yield (sub if is_module(sub) else source), node.lineno


def _own(dotted: str) -> str:
    if not dotted.startswith("gear"):
        return dotted.partition(".")[0]
    while dotted != "gear" and not is_module(dotted):
        dotted = dotted.rpartition(".")[0]
    return dotted


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


#: (rule, modules it applies to, the imports they must not make, exceptions)
FORBIDDEN: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    (
        "the sans-I/O core, the broker and the admin commands do no I/O",
        ("gear.protocol", "gear.server.broker", "gear.server.admin"),
        IO_MODULES,
        (),
    ),
    (
        "the broker never imports admin, the engine, the transport or the package face",
        ("gear.server.broker",),
        (
            "gear.server.admin",
            "gear.server.engine",
            "gear.server.transport",
            "gear.server.gear_server",
            "gear.server.cli",
            "gear.server.observe",
            "gear",
        ),
        (),
    ),
    (
        "the broker's parts that run beside the core never import it",
        (
            "gear.server.broker.durable",
            "gear.server.broker.durable_run",
            "gear.server.broker.pipeline",
            "gear.server.broker.timers",
            "gear.server.broker.model",
            "gear.server.broker.wire",
            "gear.server.broker.lifecycle",
            "gear.server.broker.dead",
        ),
        ("gear.server.broker.core",),
        (),
    ),
    (
        "admin reads and acts on the broker, never on the engine or the transport",
        ("gear.server.admin",),
        ("gear.server.engine", "gear.server.transport", "gear.server.gear_server", "gear"),
        (),
    ),
    (
        "storage never imports the broker or the network layer",
        ("gear.server.storage",),
        (
            "gear.server.broker",
            "gear.server.admin",
            "gear.server.engine",
            "gear.server.transport",
            "gear",
        ),
        (),
    ),
    (
        "the harp records' rows and store contract do no I/O (the harp service imports them)",
        ("gear.server.storage.harp",),
        IO_MODULES,
        (),
    ),
    (
        "the threaded API never imports asyncio's API or the server",
        ("gear.threaded",),
        ("gear.aio", "gear.server", "asyncio"),
        (),
    ),
    (
        "the asyncio API never imports the threaded API or the server",
        ("gear.aio",),
        ("gear.threaded", "gear.server"),
        (),
    ),
    (
        "only gear.Server's module may import the threaded API into the server",
        ("gear.server",),
        ("gear.threaded", "gear.aio"),
        ("gear.server.gear_server",),
    ),
    (
        "the harp protocol, records and service do no I/O",
        ("gear.server.harp.protocol", "gear.server.harp.records", "gear.server.harp.service",
         "gear.server.harp.admin"),
        IO_MODULES,
        (),
    ),
    (
        "the harp side uses the broker's face, never the engine, admin or the package face",
        ("gear.server.harp",),
        ("gear.server.engine", "gear.server.admin", "gear.server.broker.core",
         "gear.server.cli", "gear"),
        (),
    ),
    (
        "nothing below the engine imports the harp side",
        ("gear.server.broker", "gear.server.admin", "gear.server.storage",
         "gear.server.transport", "gear.protocol"),
        ("gear.server.harp",),
        (),
    ),
    (
        "gear.harp (HarpCaller's client) imports only itself, gear.net and gear.errors",
        ("gear.harp",),
        ("gear.server", "gear.threaded", "gear.aio", "gear.protocol", "gear"),
        ("gear.harp.daemon",),
    ),
    (
        "gear.harp.direct (harpd's direct interface) imports only gear.harp's own modules "
        "and gear.net",
        ("gear.harp.direct", "gear.harp.listener"),
        ("gear.server", "gear.threaded", "gear.aio", "gear.protocol", "gear.harp.daemon",
         "gear"),
        (),
    ),
    (
        "harpd's protocol and the procedure mark do no I/O",
        ("gear.harp.harpd",),
        IO_MODULES,
        (),
    ),
    (
        "gear-harpd (gear.harp.daemon) is an application on the threaded worker: never the "
        "server, gear.aio or the package face",
        ("gear.harp.daemon",),
        ("gear.server", "gear.aio", "gear.protocol", "gear"),
        (),
    ),
    (
        "gear.harp's requests, replies and worker convention do no I/O",
        ("gear.harp.messages",),
        IO_MODULES,
        (),
    ),
    (
        "the asyncio and threaded harp modules use gear.harp's sans-I/O module only",
        ("gear.aio.harp", "gear.aio.harp_worker", "gear.threaded.harp_worker"),
        ("gear.harp.client", "gear.server"),
        (),
    ),
    (
        "gear-admin is a client of the admin protocol: no server, threaded API or asyncio",
        ("gear.admin_tool",),
        ("gear.server", "gear.threaded", "gear.aio", "gear", "asyncio", "threading"),
        (),
    ),
    (
        "observers are wired in by the engine: they never import it, the transport or admin",
        ("gear.server.observe",),
        ("gear.server.engine", "gear.server.transport", "gear.server.admin",
         "gear.server.cli", "gear.server.gear_server", "gear"),
        (),
    ),
    (
        "the compat fronts build on the protocol core and the socket helpers only",
        ("gear.compat",),
        ("gear.threaded", "gear.aio", "gear.server", "gear.harp", "asyncio", "threading", "gear"),
        (),
    ),
    (
        "the socket helpers import nothing above them",
        ("gear.net",),
        ("gear.protocol", "gear.threaded", "gear.aio", "gear.server", "gear"),
        (),
    ),
]


def _violations(prefixes: tuple[str, ...], banned: tuple[str, ...], exempt: tuple[str, ...]):
    for name in MODULES:
        if not any(within(name, p) for p in prefixes) or any(within(name, e) for e in exempt):
            continue
        for imported, line in imports_of(name):
            if imported == name:
                continue
            for b in banned:
                # "gear" alone bans the package face, not every module below it.
                if (imported == b) if b == "gear" else within(imported, b):
                    yield f"{MODULES[name].relative_to(SRC.parent)}:{line} imports {imported}"


@pytest.mark.parametrize(
    ("prefixes", "banned", "exempt"),
    [pytest.param(p, b, e, id=rule) for rule, p, b, e in FORBIDDEN],
)
def test_import_rule(prefixes, banned, exempt) -> None:
    assert list(_violations(prefixes, banned, exempt)) == []


def test_protocol_imports_only_itself_errors_and_constants() -> None:
    allowed = ("gear.protocol", "gear.errors", "gear.constants")
    bad = [
        f"{name} imports {imported} (line {line})"
        for name in MODULES
        if within(name, "gear.protocol")
        for imported, line in imports_of(name)
        if within(imported, "gear") and not any(within(imported, a) for a in allowed)
    ]
    assert bad == []


def test_no_import_cycles() -> None:
    graph = {
        name: {i for i, _ in imports_of(name) if i in MODULES and i != name} for name in MODULES
    }
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    assert cycles == []


def test_the_checker_sees_lazy_relative_and_face_imports() -> None:
    """The checker itself: an import inside a function counts (the broker once imported admin
    lazily to hide a cycle), relative imports resolve, and a name from the package face is
    told apart from a submodule."""
    source = (
        "from gear import constants, __version__\n"
        "from . import messages\n"
        "def f():\n"
        "    from gear.server import storage\n"
        "    import ssl\n"
    )
    found = sorted(i for i, _ in imports_in(source, "gear.protocol.packets"))
    assert found == [
        "gear",
        "gear.constants",
        "gear.protocol.messages",
        "gear.server.storage",
        "ssl",
    ]


def test_admin_tool_imports_only_the_protocol_net_errors_constants_and_version() -> None:
    allowed = ("gear.admin_tool", "gear.protocol", "gear.net", "gear.errors", "gear.constants",
               "gear._version")
    bad = [
        f"{name} imports {imported} (line {line})"
        for name in MODULES
        if within(name, "gear.admin_tool")
        for imported, line in imports_of(name)
        if within(imported, "gear") and not any(within(imported, a) for a in allowed)
    ]
    assert bad == []


def test_harp_direct_and_listener_import_only_gear_harp_and_net() -> None:
    allowed = ("gear.harp.client", "gear.harp.harpd", "gear.harp.messages", "gear.net")
    bad = [
        f"{name} imports {imported} (line {line})"
        for name in ("gear.harp.direct", "gear.harp.listener", "gear.harp.harpd")
        for imported, line in imports_of(name)
        if within(imported, "gear") and not any(within(imported, a) for a in allowed)
        and imported != "gear.harp"
    ]
    assert bad == []
