"""The protocol key: equal for the same data, split, catalog and evaluation; a part per change."""

import dataclasses

import pandas as pd

from trainer import config as cfg
from trainer import contract
from trainer.inputs import protocol

CONFIG = cfg.load_config("configs/online_retail.yaml")


def _frame(rows):
    return pd.DataFrame(
        rows, columns=[contract.BUYER_ID, contract.PRODUCT_ID, contract.TIMESTAMP]
    ).assign(**{contract.HISTORY: "x y"})


TRAIN = _frame([("a", "p1", 1), ("b", "p2", 2)])
EVAL = _frame([("a", "p2", 3)])
TEST = _frame([("b", "p1", 4), ("a", "p3", 5)])
CATALOG = pd.DataFrame({contract.PRODUCT_ID: ["p1", "p2", "p3"]})


def _tags(config=CONFIG, splits=(TRAIN, EVAL, TEST), catalog=CATALOG):
    return protocol.protocol_tags(config, list(splits), catalog)


def _with_split(**changes):
    split = dataclasses.replace(CONFIG.dataset.split, **changes)
    return dataclasses.replace(CONFIG, dataset=dataclasses.replace(CONFIG.dataset, split=split))


def test_the_tags_are_the_parts_and_their_key():
    tags = _tags()
    assert set(tags) == {contract.TAG_PROTOCOL_KEY, *contract.PROTOCOL_PARTS}
    assert tags[contract.TAG_PROTOCOL_SPLIT] == "strict_time train<2011-10-01 eval<2011-11-01"
    assert tags[contract.TAG_PROTOCOL_CATALOG] == "3"
    assert tags[contract.TAG_PROTOCOL_EVALUATION] == contract.EVALUATION_PROTOCOL_VERSION
    assert tags[contract.TAG_PROTOCOL_DATASET].startswith("5:")
    assert tags == _tags()  # deterministic


def test_the_digest_ignores_row_order_split_and_derived_columns():
    same = [pd.concat([TEST, TRAIN]).iloc[::-1], EVAL.assign(**{contract.HISTORY: "other"})]
    assert protocol.dataset_digest(same) == protocol.dataset_digest([TRAIN, EVAL, TEST])
    changed = [TRAIN, EVAL, TEST.assign(**{contract.TIMESTAMP: [4, 6]})]
    assert protocol.dataset_digest(changed) != protocol.dataset_digest([TRAIN, EVAL, TEST])


def test_each_change_changes_its_part_and_the_key():
    base = _tags()
    changed = {
        contract.TAG_PROTOCOL_SPLIT: _tags(_with_split(eval_end=CONFIG.dataset.split.train_end)),
        contract.TAG_PROTOCOL_CATALOG: _tags(catalog=CATALOG.iloc[:2]),
        contract.TAG_PROTOCOL_DATASET: _tags(splits=(TRAIN, EVAL)),
        contract.TAG_PROTOCOL_EVALUATION: _tags(
            dataclasses.replace(
                CONFIG, training=dataclasses.replace(CONFIG.training, exclude_seen=True)
            )
        ),
    }
    for part, tags in changed.items():
        assert [p for p in contract.PROTOCOL_PARTS if tags[p] != base[p]] == [part]
        assert tags[contract.TAG_PROTOCOL_KEY] != base[contract.TAG_PROTOCOL_KEY]
    random = _tags(_with_split(strategy="random"))
    assert random[contract.TAG_PROTOCOL_SPLIT] == "random eval=0.1 test=0.1 seed=42"
