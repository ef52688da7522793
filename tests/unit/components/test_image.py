"""components.with_image: the one way to run a compiled spec in another image."""

import os

import pytest
import yaml

import components

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
OTHER = "europe-west4-docker.pkg.dev/my-project/pipelines/b2b-recs:0.1.0-abc1234"


def _spec_text() -> str:
    with open(os.path.join(REPO, "pipeline_specs", "training_pipeline.yaml")) as f:
        return f.read()


def test_every_executor_runs_in_the_new_image():
    spec = yaml.safe_load(components.with_image(_spec_text(), OTHER))
    executors = spec["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {OTHER}
    assert components.COMPONENT_IMAGE not in components.with_image(_spec_text(), OTHER)


@pytest.mark.parametrize("bad", ["b2b-recs", "b2b-recs:latest", "Registry/x:1", "a/b:"])
def test_references_without_registry_and_tag_are_refused(bad):
    with pytest.raises(ValueError, match="image: expected a reference with a tag or digest"):
        components.with_image(_spec_text(), bad)


def test_a_spec_compiled_with_another_image_is_refused():
    other = components.with_image(_spec_text(), OTHER)
    with pytest.raises(ValueError, match="does not name the default image"):
        components.with_image(other, OTHER.replace("abc1234", "def5678"))
