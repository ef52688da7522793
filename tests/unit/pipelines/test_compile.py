"""The compiled specs are generated, current, and compiling needs only kfp."""

import os
import subprocess
import sys

from pipelines import PIPELINES, SPEC_DIR

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_committed_specs_match_a_fresh_compile(tmp_path):
    from pipelines.__main__ import compile_all

    for path in compile_all(str(tmp_path)):
        name = os.path.basename(path)
        committed = os.path.join(REPO, SPEC_DIR, name)
        assert os.path.exists(committed), f"{name} is not committed: run `make compile`"
        with open(path) as fresh, open(committed) as old:
            assert fresh.read() == old.read(), f"{SPEC_DIR}/{name} is stale: run `make compile`"
    assert sorted(os.listdir(tmp_path)) == sorted(f"{n}.yaml" for n in PIPELINES)


def test_compiling_imports_no_tensorflow_beam_or_mlflow(tmp_path):
    probe = (
        "import sys\n"
        "from pipelines.__main__ import compile_all\n"
        f"compile_all({str(tmp_path)!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tensorflow_transform', 'tensorflow_recommenders', 'apache_beam', "
        "'mlflow', 'tf_keras', 'pandas'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"compiling imported: {out.stdout.strip()}"


def test_components_and_pipelines_import_only_kfp_and_stdlib_at_top():
    import ast

    allowed = set(sys.stdlib_module_names) | {"kfp", "components", "pipelines", "__future__"}
    # The contract module is standard-library only (tests/unit/trainer/test_structure.py).
    allowed_modules = {"trainer.contract"}
    for package in ("components", "pipelines"):
        for name in os.listdir(os.path.join(REPO, package)):
            if not name.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(REPO, package, name)).read())
            for node in tree.body:  # module top level only; component bodies import freely
                if isinstance(node, ast.Import):
                    roots = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.module in allowed_modules:
                        continue
                    roots = [(node.module or "").split(".")[0]]
                else:
                    continue
                bad = [r for r in roots if r not in allowed]
                assert not bad, f"{package}/{name} imports {bad} at module top"


def test_pipeline_spec_documents_every_parameter():
    import yaml

    with open(os.path.join(REPO, SPEC_DIR, "training_pipeline.yaml")) as f:
        spec = yaml.safe_load(f)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"config_yaml", "mlflow_tracking_uri", "feature_config_id", "model_config_id"} <= set(
        params
    )
    for name, definition in params.items():
        assert definition.get("description"), f"pipeline parameter {name} has no description"
