"""trainer/ is a set of wings in pipeline order over a standard-library ground floor.

Each wing is a subpackage whose ``__init__`` is its face: the only thing imported from
outside the wing (by other wings, the command lines, components/, pipelines/, reporting/ and
bench/; tests of a wing may reach its modules). A wing imports only the ground floor and the
wings before it in ``WINGS``, so imports run one way and no circle can form. Light layers
stay light (training needs no Beam, evaluation no training code), no function in trainer/ or
reporting/ grows past ~60 lines, and a module past 400 lines says why.

Draw the graph with ``python tests/import_graph.py trainer [--wings]``.
"""

import ast
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
import import_graph  # noqa: E402  (tests/ is not a package)

GROUND = ("contract", "layout")  # standard library only
# Pipeline order: a wing may import the ground floor and the wings before it, never after.
WINGS = (
    "config",
    "cost",
    "tracking",
    "retrieval",
    "inputs",
    "sources",
    "ingest",
    "sweep",
    "features",
    "transform",
    "serving",
    "train",
    "rank",
    "evaluate",
    "registry",
)
ENTRY_POINTS = ("__main__", "tfx_module")  # may import any face
OUTSIDE = ("components", "pipelines", "reporting", "bench")
MAX_FUNCTION_LINES = 65  # the style's "~60", with room for a long signature


def _python_files(*packages):
    for package in packages:
        for folder, dirs, files in os.walk(os.path.join(REPO, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, REPO), path


def _trainer_imports(path):
    """(line, dotted module, imported names) of every import of trainer.* in a file."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("trainer."):
                    yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module == "trainer" or node.module.startswith("trainer."):
                yield node.lineno, node.module, tuple(a.name for a in node.names)


def _wing_of(rel_path):
    parts = rel_path.split(os.sep)
    return parts[1] if parts[0] == "trainer" and len(parts) > 2 else None


def _is_module(dotted):
    base = os.path.join(REPO, *dotted.split("."))
    return os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py"))


def test_trainer_is_the_ground_floor_the_wings_and_the_entry_points():
    entries = sorted(n for n in os.listdir(os.path.join(REPO, "trainer")) if n != "__pycache__")
    modules = {n[:-3] for n in entries if n.endswith(".py")}
    folders = {n for n in entries if not n.endswith(".py")}
    assert modules == {"__init__", *GROUND, *ENTRY_POINTS}, modules
    assert folders == set(WINGS), folders


def test_only_faces_are_imported_from_outside_a_wing():
    reaching = []
    for rel, path in _python_files("trainer", *OUTSIDE):
        here = _wing_of(rel)
        for line, module, names in _trainer_imports(path):
            parts = module.split(".")
            if len(parts) < 2 or parts[1] not in WINGS or parts[1] == here:
                continue
            submodules = [n for n in names if _is_module(f"{module}.{n}")]
            if len(parts) > 2 or submodules:
                reaching.append(f"{rel}:{line}: {module} {submodules or ''}")
    assert not reaching, "past a wing's face:\n" + "\n".join(reaching)


def test_wings_import_only_the_ground_floor_and_earlier_wings():
    backwards = []
    for rel, path in _python_files("trainer"):
        here = _wing_of(rel)
        name = os.path.splitext(os.path.basename(rel))[0]
        for line, module, names in _trainer_imports(path):
            targets = [module.split(".")[1]] if module != "trainer" else list(names)
            for target in targets:
                if here is None and name in ENTRY_POINTS + ("__init__",):
                    continue
                if here is None:  # the ground floor: contract, and nothing above it
                    ok = target in GROUND and GROUND.index(target) < GROUND.index(name)
                elif target in GROUND or target == here:
                    ok = True
                else:
                    ok = target in WINGS and WINGS.index(target) < WINGS.index(here)
                if not ok:
                    backwards.append(f"{rel}:{line}: imports trainer.{target}")
    assert not backwards, "\n".join(backwards)


def test_a_wing_reaches_its_own_modules_directly_never_through_its_face():
    # A module importing its own face would depend on the face's import order.
    through_face = []
    for rel, path in _python_files("trainer"):
        here = _wing_of(rel)
        if here is None or rel.endswith("__init__.py"):
            continue
        for line, module, names in _trainer_imports(path):
            from_face = module == f"trainer.{here}" and not all(
                _is_module(f"{module}.{n}") for n in names
            )
            if from_face or (module == "trainer" and here in names):
                through_face.append(f"{rel}:{line}")
    assert not through_face, through_face


def test_faces_only_re_export_and_say_what_they_export():
    for wing in WINGS:
        path = os.path.join(REPO, "trainer", wing, "__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        assert ast.get_docstring(tree), f"trainer/{wing}/__init__.py has no docstring"
        imported, exported = set(), None
        for node in tree.body[1:]:
            if isinstance(node, ast.ImportFrom):
                assert node.module.startswith(f"trainer.{wing}."), (wing, node.module)
                imported.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.Assign) and node.targets[0].id == "__all__":
                exported = set(ast.literal_eval(node.value))
            else:
                pytest.fail(f"trainer/{wing}/__init__.py: line {node.lineno} is not a re-export")
        assert exported == imported, (wing, exported ^ (imported or set()))


def test_no_circle_between_trainer_modules():
    edges = import_graph.graph(REPO, "trainer")
    assert import_graph.circles(edges) == []
    wings = import_graph.graph(REPO, "trainer", wings=True)
    assert import_graph.circles(wings) == []


def _modules_after_import(module: str) -> set[str]:
    """Top-level package names (and trainer.* modules) loaded by importing ``module``."""
    code = (
        "import json, sys\n"
        f"import {module}\n"
        "print(json.dumps(sorted({m if m.startswith('trainer') else m.split('.')[0]"
        " for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["trainer.contract", "trainer.layout"])
def test_the_ground_floor_needs_only_the_standard_library(module):
    loaded = _modules_after_import(module)
    assert not loaded & {"numpy", "pandas", "tensorflow", "yaml"}, loaded


@pytest.mark.parametrize("module", ["trainer.config", "trainer.sweep", "trainer.sources"])
def test_what_the_command_lines_check_first_needs_no_tensorflow(module):
    loaded = _modules_after_import(module)
    assert not loaded & {"tensorflow", "apache_beam", "mlflow"}, loaded


def test_training_and_its_entry_points_import_no_beam():
    loaded = _modules_after_import("trainer.train, trainer.tfx_module, trainer.evaluate")
    assert "apache_beam" not in loaded and "trainer.transform" not in loaded


def test_evaluation_imports_no_training_code():
    loaded = _modules_after_import("trainer.evaluate")
    training = {m for m in loaded if m.startswith(("trainer.train", "trainer.transform"))}
    assert not training and "apache_beam" not in loaded, training
    assert "tensorflow_recommenders" not in loaded


def _functions(path: str):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_in_trainer_or_reporting_is_longer_than_about_60_lines():
    # write_report: 48 of its lines are the signature and the Args of a documented entry point
    # (and 2 start the per-run charts' processes before the runs are read);
    # run_training: 45 are (the train step's 15 parameters, each documented).
    # run_training is the step's one entry, a parameter per thing a caller decides (a halving
    # rung and the checkpoint it continues included); train_and_export the step's one path
    # from data to export, stopping early at a halving rung before the last.
    allowed = {
        "reporting/build.py.write_report": 79,
        "trainer/train/loop.py.run_training": 75,
        "trainer/train/loop.py.train_and_export": 74,
    }
    too_long = {
        f"{name}.{fn}": lines
        for name, path in _python_files("trainer", "reporting")
        for fn, lines in _functions(path)
        if lines > allowed.get(f"{name}.{fn}", MAX_FUNCTION_LINES)
    }
    assert not too_long, too_long


def test_a_module_over_400_lines_says_why():
    silent = []
    for name, path in _python_files("trainer", "reporting"):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # The reason stands near the top: the module docstring or a comment under the imports.
        if text.count("\n") > 400 and "400 lines" not in text[:3000]:
            silent.append(name)
    assert not silent, f"over 400 lines without saying why: {silent}"
