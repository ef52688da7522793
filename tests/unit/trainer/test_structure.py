"""The trainer's modules form a one-way stack: light layers stay light, training needs no Beam,
evaluation needs no training code, and no function grows past ~60 lines."""

import ast
import json
import os
import subprocess
import sys

import pytest

TRAINER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "trainer")
REPO = os.path.abspath(os.path.join(TRAINER, ".."))
MAX_FUNCTION_LINES = 65  # the style's "~60", with room for a long signature


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
def test_vocabulary_and_layout_need_only_the_standard_library(module):
    loaded = _modules_after_import(module)
    assert not loaded & {"numpy", "pandas", "tensorflow", "yaml"}, loaded


def test_training_and_its_entry_points_import_no_beam():
    loaded = _modules_after_import("trainer.train, trainer.tfx_module, trainer.evaluate")
    assert "apache_beam" not in loaded and "trainer.transform" not in loaded


def test_evaluation_imports_no_training_code():
    loaded = _modules_after_import("trainer.evaluate")
    training = {"trainer.train", "trainer.callbacks", "trainer.model", "trainer.transform"}
    assert not loaded & training, loaded & training
    assert "tensorflow_recommenders" not in loaded


def _functions(path: str):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_trainer_function_is_longer_than_about_60_lines():
    too_long = {
        f"{name}.{fn}": lines
        for name in sorted(os.listdir(TRAINER))
        if name.endswith(".py")
        for fn, lines in _functions(os.path.join(TRAINER, name))
        if lines > MAX_FUNCTION_LINES
    }
    assert not too_long, too_long
