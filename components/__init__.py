"""KFP components: thin wrappers that call trainer/ and reporting/ (no logic here)."""

import re

# The one image every component runs in (built from ./Dockerfile with the package installed:
# `make image`, cloudbuild.yaml). Pinned by tag so a compiled spec always names the image it was
# tested with. This is its only default: another image is set in the compiled spec by
# `python -m pipelines compile --image REF` or by an environment file's `image` at submit.
COMPONENT_IMAGE = "europe-docker.pkg.dev/b2b-recs/pipelines/b2b-recs:0.1.0"

# An image reference with a tag or a digest: what `compile --image` and an env file take.
IMAGE_REF = re.compile(
    r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$"
)


def with_image(spec_yaml: str, image: str) -> str:
    """Returns a compiled pipeline spec (YAML text) whose steps run in ``image``.

    Components are decorated at import with ``COMPONENT_IMAGE``; the image is a compile-time
    constant of the spec, so setting another one is replacing that exact reference everywhere
    the compiler wrote it (each executor's container, a custom job's worker pool spec).

    Args:
        spec_yaml: The compiled spec, as KFP's compiler wrote it.
        image: The image reference, with a tag or digest (REGISTRY/PATH:TAG).

    Returns:
        The spec text with every occurrence of ``COMPONENT_IMAGE`` replaced.

    Raises:
        ValueError: ``image`` is not a full reference, or the spec never names the default.
    """
    if not IMAGE_REF.match(image):
        raise ValueError(
            f"image: expected a reference with a tag or digest like "
            f"REGION-docker.pkg.dev/PROJECT/REPO/b2b-recs:0.1.0, got {image!r}"
        )
    if COMPONENT_IMAGE not in spec_yaml:
        raise ValueError(f"the spec does not name the default image {COMPONENT_IMAGE}")
    return spec_yaml.replace(COMPONENT_IMAGE, image)
