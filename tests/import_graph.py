"""Draws the import graph of a package's modules: floors, arrows, circles.

    python tests/import_graph.py [PACKAGE] [--wings | --through-faces]   (from the repo root)

A module's floor is the length of the longest import path below it (0: it imports no module
of the package); an arrow is one module importing another (at the top or inside a function);
a circle is a set of modules that reach each other. ``--wings`` draws the same graph between
a package's subpackages (its wings) and its top-level modules; ``--through-faces`` leaves
the faces out and counts an import of a face as arrows to the modules it takes names from.
"""

import ast
import os
import sys


def modules(root: str, package: str) -> dict[str, str]:
    """Every module of ``package`` (dotted name -> file path)."""
    found = {}
    base = os.path.join(root, package)
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            found[".".join(rel)] = os.path.join(folder, name)
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: str, name: str, known: set[str]) -> set[str]:
    """The modules in ``known`` that the file at ``path`` (module ``name``) imports."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    is_package = path.endswith("__init__.py")
    targets = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pkg import mod`` imports the module ``pkg.mod``; ``from pkg import name``
            # imports ``pkg``.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    found = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _face_exports(path: str) -> dict[str, str]:
    """A face's re-exports: name -> the module that defines it."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and not node.level
        for alias in node.names
    }


def _names_used_from(path: str, faces: set[str]) -> dict[str, set[str]]:
    """For each face a file imports: the names it takes from it (imported or as attributes)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    used: dict[str, set[str]] = {}
    bound: dict[str, str] = {}  # local name -> face
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in faces:
                    bound[alias.asname or alias.name] = sub
                elif node.module in faces:
                    used.setdefault(node.module, set()).add(alias.name)
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in bound:
                used.setdefault(bound[node.value.id], set()).add(node.attr)
    return used


def graph(
    root: str, package: str, wings: bool = False, through_faces: bool = False
) -> dict[str, set[str]]:
    """Arrows between the package's modules (or, with ``wings``, its wings).

    ``through_faces``: an import of a wing's face counts as arrows to the modules that define
    what the importer takes from it (the faces themselves are left out), so the files' own
    dependencies can be compared with a layout that had no faces.
    """
    mods = modules(root, package)
    edges = {m: imports_of(p, m, set(mods)) for m, p in mods.items()}
    if through_faces:
        faces = {m for m, p in mods.items() if p.endswith("__init__.py") and m != package}
        exports = {f: _face_exports(mods[f]) for f in faces}
        for m in list(edges):
            used = _names_used_from(mods[m], faces)
            for face in edges[m] & faces:
                names = used.get(face, set())
                edges[m] = (edges[m] - {face}) | {exports[face].get(n, face) for n in names}
            edges[m].discard(m)
        for face in faces:
            edges.pop(face)
    if not wings:
        edges.pop(package, None)
        return {m: {t for t in ts if t != package} for m, ts in edges.items()}

    def wing(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for m, ts in edges.items():
        if m == package:
            continue
        out.setdefault(wing(m), set()).update(wing(t) for t in ts if t != package)
    return {w: ts - {w} for w, ts in out.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def floors(edges: dict[str, set[str]]) -> dict[str, int]:
    """Each node's floor (longest path down; nodes in a circle share the circle's floor)."""
    member = {v: tuple(g) for g in circles(edges) for v in g}
    memo: dict[str, int] = {}

    def floor(v, seen=()):
        if v in memo:
            return memo[v]
        group = member.get(v, (v,))
        below = [
            floor(w, seen + group)
            for u in group
            for w in edges.get(u, ())
            if w not in group and w not in seen
        ]
        memo.update({u: 1 + max(below) if below else 0 for u in group})
        return memo[v]

    for v in edges:
        floor(v)
    return memo


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    package = args[0] if args else "trainer"
    root = os.getcwd()
    edges = graph(root, package, wings="--wings" in argv, through_faces="--through-faces" in argv)
    level = floors(edges)
    arrows = sum(len(ts) for ts in edges.values())
    loops = circles(edges)
    print(
        f"{package}: {len(edges)} nodes, {max(level.values()) + 1} floors, {arrows} arrows, "
        f"{len(loops)} circles"
    )
    for f in range(max(level.values()), -1, -1):
        names = sorted(v for v in edges if level[v] == f)
        print(f"  floor {f}: " + ", ".join(n.removeprefix(package + ".") for n in names))
    for loop in loops:
        print("  circle: " + " <-> ".join(loop))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
