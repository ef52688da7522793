"""Each feature transform on a few rows, with the expected outputs (tft_unit style)."""

import math

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_transform import DatasetMetadata
from tensorflow_transform.beam import tft_unit

from trainer import config as cfg
from trainer import contract, features

pytestmark = pytest.mark.integration  # real Beam pipelines

SPEC = {
    contract.BUYER_ID: tf.io.FixedLenFeature([], tf.string),
    contract.PRODUCT_ID: tf.io.FixedLenFeature([], tf.string),
    contract.COUNTRY: tf.io.FixedLenFeature([], tf.string),
    contract.DESCRIPTION: tf.io.FixedLenFeature([], tf.string),
    contract.HISTORY: tf.io.FixedLenFeature([], tf.string),
    contract.PRICE: tf.io.FixedLenFeature([], tf.float32),
    contract.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
}
ROWS = [
    {
        "buyer_id": "b1",
        "product_id": "p1",
        "country": "UK",
        "description": "Red MUG, large",
        "history": "p2 p1",
        "price": 1.0,
        "timestamp": 0,
    },
    {
        "buyer_id": "b1",
        "product_id": "p1",
        "country": "FR",
        "description": "red mug",
        "history": "",
        "price": math.e - 1,
        "timestamp": 6 * 3600,
    },
    {
        "buyer_id": "b2",
        "product_id": "p2",
        "country": "UK",
        "description": "blue bowl!",
        "history": "p9 p2 p1",
        "price": math.e**2 - 1,
        "timestamp": 86400 * 2,
    },
]


def _fc(*buyer: cfg.Feature) -> cfg.FeatureConfig:
    return cfg.FeatureConfig(
        id="t",
        name="t",
        buyer=(cfg.Feature(contract.BUYER_ID, "vocabulary"), *buyer),
        product=(cfg.Feature(contract.PRODUCT_ID, "vocabulary"),),
    )


# buyer_id and product_id vocabularies: by frequency (b1, p1 twice), then OOV bucket = size.
IDS = [
    {"buyer_id__vocabulary": 0, "product_id__vocabulary": 0},
    {"buyer_id__vocabulary": 0, "product_id__vocabulary": 0},
    {"buyer_id__vocabulary": 1, "product_id__vocabulary": 1},
]


class FeatureTransformTest(tft_unit.TransformTestCase):
    def _check(self, feature: cfg.Feature, expected: list, **kwargs):
        key = features.transformed_name(feature)
        self.assertAnalyzeAndTransformResults(
            ROWS,
            DatasetMetadata.from_feature_spec(SPEC),
            features.make_preprocessing_fn(_fc(feature)),
            expected_data=[{**ids, key: value} for ids, value in zip(IDS, expected)],
            **kwargs,
        )

    def test_vocabulary_with_min_frequency_sends_rare_values_to_oov(self):
        feature = cfg.Feature(contract.COUNTRY, "vocabulary", min_frequency=2, oov_buckets=1)
        # Only UK is seen twice: vocabulary [UK], FR falls into the OOV bucket 1.
        self._check(
            feature,
            [0, 1, 0],
            expected_vocab_file_contents={
                "country_vocab": [b"UK"],
                "buyer_id_vocab": [b"b1", b"b2"],
                "product_id_vocab": [b"p1", b"p2"],
            },
        )

    def test_hashing_matches_tensorflow_fingerprint_buckets(self):
        feature = cfg.Feature(contract.COUNTRY, "hashing", hash_buckets=7)
        expected = tf.strings.to_hash_bucket_fast(["UK", "FR", "UK"], 7).numpy().tolist()
        self._check(feature, expected)

    def test_cross_hashes_the_joined_pair(self):
        feature = cfg.Feature(
            contract.COUNTRY, "cross", cross_with=contract.BUYER_ID, hash_buckets=11
        )
        joined = ["UK\x1fb1", "FR\x1fb1", "UK\x1fb2"]
        self._check(feature, tf.strings.to_hash_bucket_fast(joined, 11).numpy().tolist())

    def test_zscore_centres_and_scales(self):
        feature = cfg.Feature(contract.PRICE, "zscore")
        values = np.array([1.0, math.e - 1, math.e**2 - 1])
        self._check(feature, ((values - values.mean()) / values.std()).astype(np.float32).tolist())

    def test_log_scales_then_standardises(self):
        feature = cfg.Feature(contract.PRICE, "log")
        # log1p(price) = [log 2, 1, 2]
        logs = np.array([math.log(2.0), 1.0, 2.0])
        self._check(feature, ((logs - logs.mean()) / logs.std()).astype(np.float32).tolist())

    def test_bucketize_by_quantiles(self):
        feature = cfg.Feature(contract.PRICE, "bucketize", num_buckets=3)
        self._check(feature, [0, 1, 2])

    def test_text_is_a_padded_bag_of_lowercased_tokens(self):
        feature = cfg.Feature(contract.DESCRIPTION, "text", max_length=3, oov_buckets=1)
        # Vocabulary by frequency (ties by token, descending): red, mug (x2), then the rest.
        self._check(
            feature,
            [[0, 1, 2], [0, 1, -1], [4, 3, -1]],
            expected_vocab_file_contents={
                "description_vocab": [b"red", b"mug", b"large", b"bowl", b"blue"],
                "buyer_id_vocab": [b"b1", b"b2"],
                "product_id_vocab": [b"p1", b"p2"],
            },
        )

    def test_history_uses_the_product_vocabulary(self):
        feature = cfg.Feature(contract.HISTORY, "history", max_length=3)
        # p1 -> 0, p2 -> 1, unknown p9 -> OOV bucket 2; padding -1.
        self._check(feature, [[1, 0, -1], [-1, -1, -1], [2, 1, 0]])

    def test_time_is_cyclical_plus_recency(self):
        feature = cfg.Feature(contract.TIMESTAMP, "time")
        days = np.array([0.0, 0.25, 2.0])
        recency = (days - days.mean()) / days.std()
        expected = []
        for d, r in zip(days, recency):
            hour, weekday, season = (
                d % 1.0,
                ((math.floor(d) + 3) % 7) / 7.0,
                (d % 365.2425) / 365.2425,
            )
            row = []
            for phase in (hour, weekday, season):
                row += [math.sin(2 * math.pi * phase), math.cos(2 * math.pi * phase)]
            expected.append(np.array(row + [r], np.float32).tolist())
        self._check(feature, expected)
