"""The Beam options a transform run gets: DirectRunner by default, and on Dataflow what the
environment file sets, the component image included (the workers' SDK container)."""

import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from pipelines import env as envs
from trainer.transform import beam as transform


def test_no_args_run_the_direct_runner_in_memory():
    options = transform.pipeline_options([])
    assert options.view_as(StandardOptions).runner == "DirectRunner"
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"


def test_a_dataflow_run_gets_the_environment_files_options_and_the_worker_image():
    env = envs.load_env("configs/env/example.yaml")
    args = env.pipeline_parameters()["beam_pipeline_args"]
    options = transform.pipeline_options(args)
    cloud = options.view_as(GoogleCloudOptions)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert (cloud.project, cloud.region) == ("my-gcp-project", "europe-west4")
    assert cloud.temp_location == "gs://my-gcp-project-pipelines/dataflow/tmp"
    # The Dockerfile's dataflow-worker target, pushed beside the component image.
    assert options.view_as(WorkerOptions).sdk_container_image == env.dataflow_worker_image
    assert env.dataflow_worker_image.startswith(env.image.rsplit(":", 1)[0] + "-dataflow-worker:")
    # The workers import trainer from the image: nothing of the launcher's session is pickled.
    assert not options.view_as(SetupOptions).save_main_session
    assert transform._temp_dir(options, "gs://bucket/xf") == cloud.temp_location


@pytest.mark.parametrize(
    "drop, named",
    [
        ("--sdk_container_image=", "--sdk_container_image"),
        ("--region=", "--region"),
        ("--temp_location=", "--temp_location=gs://"),
    ],
)
def test_a_dataflow_run_without_what_its_workers_need_is_refused(drop, named):
    args = [
        "--runner=DataflowRunner",
        "--project=p",
        "--region=r",
        "--temp_location=gs://b/tmp",
        "--sdk_container_image=europe-docker.pkg.dev/p/r/img:1",
    ]
    with pytest.raises(ValueError, match=f"needs {named}"):
        transform.pipeline_options([a for a in args if not a.startswith(drop)])


def test_temp_files_of_a_uri_output_stay_next_to_it():
    options = transform.pipeline_options([])
    assert transform._temp_dir(options, "gs://bucket/run/xf") == "gs://bucket/run/xf/tmp"
