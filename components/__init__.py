"""KFP components: thin wrappers that call trainer/ and reporting/ (no logic here)."""

# The one image every component runs in (built from ./Dockerfile with the package installed).
# Pinned by tag so a compiled spec always names the image it was tested with.
COMPONENT_IMAGE = "europe-docker.pkg.dev/b2b-recs/pipelines/b2b-recs:0.1.0"
