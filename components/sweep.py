"""plan_sweep and bind_transforms: the lists a sweep pipeline loops over."""

from typing import NamedTuple

from kfp import dsl

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def plan_sweep(config_yaml: str) -> NamedTuple("Plan", feature_config_ids=list, trainings=list):
    """Lists the feature configs to transform and the trainings of the experiment's grid.

    Args:
        config_yaml: The experiment config (YAML text); its grid and training.seeds decide.

    Returns:
        feature_config_ids: Each feature config a training uses, transformed once.
        trainings: One item per (feature config, model config, seed) to train.
    """
    from collections import namedtuple

    from trainer import config as cfg
    from trainer import sweep

    feature_config_ids, trainings = sweep.plan(
        cfg.parse_config_text(config_yaml, source="config_yaml")
    )
    return namedtuple("Plan", ["feature_config_ids", "trainings"])(feature_config_ids, trainings)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def bind_transforms(trainings: list, transforms: list) -> list:
    """Gives each training the transform output of its feature config.

    Args:
        trainings: The plan's trainings.
        transforms: What each transform_data task returned (feature config id and URI).

    Returns:
        The trainings, each with the URI of the transform it trains on.
    """
    from trainer import sweep

    return sweep.bind_transforms(trainings, transforms)
