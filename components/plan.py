"""plan_sweep and bind_transforms: the lists a sweep pipeline loops over."""

from kfp import dsl

from components import COMPONENT_IMAGE


# kfp.local (2.17) loops only over a task's single output, so each list is its own task.
@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def plan_sweep(config_yaml: str) -> list:
    """Lists the feature configs the experiment's grid trains with, each to transform once.

    Args:
        config_yaml: The experiment config (YAML text); its grid and training.seeds decide.

    Returns:
        The ids of the feature configs that at least one training of the grid uses.
    """
    from trainer import config as cfg
    from trainer import sweep

    feature_config_ids, _ = sweep.plan(cfg.parse_config_text(config_yaml, source="config_yaml"))
    return feature_config_ids


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def bind_transforms(config_yaml: str, transforms: list) -> list:
    """Lists the grid's trainings, each with the transform output of its feature config.

    Args:
        config_yaml: The experiment config (YAML text).
        transforms: What each transform_data task returned (feature config id and URI).

    Returns:
        One item per (feature config, model config, seed): the ids, the seed, the run key and
        the URI of the transform it trains on.
    """
    from trainer import config as cfg
    from trainer import sweep

    _, trainings = sweep.plan(cfg.parse_config_text(config_yaml, source="config_yaml"))
    return sweep.bind_transforms(trainings, transforms)
