"""Step folder layout: every path is built from the contract's file names, gs:// kept intact."""

import glob

from trainer import contract, layout


def test_ingest_paths_use_the_contract_names():
    assert layout.split_path("/x/ingest", "train") == "/x/ingest/train.parquet"
    assert layout.split_path("/x/ingest", "test", "tfrecord") == "/x/ingest/test.tfrecord.gz"
    assert layout.catalog_path("/x/ingest") == f"/x/ingest/{contract.CATALOG_FILE}"
    assert layout.schema_path("/x/ingest") == f"/x/ingest/{contract.SCHEMA_FILE}"
    assert layout.stats_path("/x/ingest") == f"/x/ingest/{contract.STATS_FILE}"


def test_model_and_evaluate_paths_use_the_contract_names():
    assert layout.serving_path("/m") == f"/m/{contract.SERVING_DIR}"
    assert layout.config_path("/m") == f"/m/{contract.CONFIG_FILE}"
    assert layout.metrics_path("/e") == f"/e/{contract.METRICS_FILE}"
    assert layout.top_k_path("/e") == f"/e/{contract.TOP_K_FILE}"
    assert layout.per_buyer_path("/e", "test") == "/e/per_buyer_test.parquet"
    assert layout.per_buyer_path("/e", "eval") == "/e/per_buyer_val.parquet"


def test_transformed_pattern_matches_the_shards_the_writer_names(tmp_path):
    prefix = layout.transformed_prefix(str(tmp_path), "eval")
    (tmp_path / contract.TRANSFORMED_DIR).mkdir()
    # Beam's WriteToTFRecord names shards <prefix>-SSSSS-of-NNNNN<suffix>.
    for shard in ("00000-of-00002", "00001-of-00002"):
        open(f"{prefix}-{shard}{layout.TFRECORD_SUFFIX}", "w").close()
    open(
        f"{layout.transformed_prefix(str(tmp_path), 'train')}-00000-of-00001.tfrecord.gz", "w"
    ).close()
    matched = glob.glob(layout.transformed_pattern(str(tmp_path), "eval"))
    assert len(matched) == 2 and all("/transformed/eval-" in m for m in matched)


def test_cloud_storage_uris_stay_uris():
    assert layout.split_path("gs://b/run/ingest", "eval") == "gs://b/run/ingest/eval.parquet"
    assert (
        layout.transformed_pattern("gs://b/xf", "train")
        == "gs://b/xf/transformed/train-*.tfrecord.gz"
    )
