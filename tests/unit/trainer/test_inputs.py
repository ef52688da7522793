"""Raw columns: one typing (contract.RAW_COLUMN_TYPES) for arrays, tensors and specs."""

import numpy as np
import pandas as pd
import tensorflow as tf

from trainer import contract, inputs

KIND_DTYPES = {contract.STRING: tf.string, contract.FLOAT: tf.float32, contract.INT: tf.int64}


def test_every_raw_column_gets_the_dtype_of_its_contract_type():
    specs = inputs.raw_specs()
    parsing = inputs.raw_feature_spec()
    assert list(specs) == list(contract.RAW_COLUMN_TYPES) == list(parsing)
    for name, kind in contract.RAW_COLUMN_TYPES.items():
        assert specs[name].dtype == KIND_DTYPES[kind] and specs[name].shape.as_list() == [None]
        assert parsing[name].dtype == KIND_DTYPES[kind] and parsing[name].shape == []


def test_raw_tensors_type_the_frame_and_fill_missing_columns_neutrally():
    frame = pd.DataFrame(
        {
            contract.BUYER_ID: [17850, 13047],  # numbers in a string column become strings
            contract.PRICE: [2.55, 3.39],
            contract.TIMESTAMP: [1291191960, 1291192000],
        }
    )
    tensors = inputs.raw_tensors(frame)
    assert set(tensors) == set(contract.RAW_COLUMN_TYPES)
    assert tensors[contract.BUYER_ID].numpy().tolist() == [b"17850", b"13047"]
    np.testing.assert_allclose(tensors[contract.PRICE].numpy(), [2.55, 3.39], rtol=1e-6)
    assert tensors[contract.TIMESTAMP].dtype == tf.int64
    assert tensors[contract.HISTORY].numpy().tolist() == [b"", b""]
    assert tensors[contract.MONETARY].numpy().tolist() == [0.0, 0.0]


def test_raw_tensors_of_chosen_columns_only():
    frame = pd.DataFrame({contract.COUNTRY: ["UK"], contract.RECENCY_DAYS: [1.5]})
    tensors = inputs.raw_tensors(frame, [contract.RECENCY_DAYS, contract.COUNTRY])
    assert list(tensors) == [contract.RECENCY_DAYS, contract.COUNTRY]
    assert tensors[contract.RECENCY_DAYS].dtype == tf.float32
