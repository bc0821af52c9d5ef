"""tinydistill.trainer: the Trainer built from the composed config, and the library noise it keeps out of logs."""

import warnings


def test_build_trainer_silences_lightnings_leafspec_deprecation(compose_cfg):
    from lightning.pytorch.utilities._pytree import _tree_flatten

    from tinydistill.trainer import build_trainer

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _tree_flatten(1)  # Lightning builds a LeafSpec for a leaf: torch 2.13 warns
        assert any("LeafSpec" in str(w.message) for w in seen), "this torch no longer warns: drop the filter"
        seen.clear()
        build_trainer(compose_cfg("stage=task", "logger=none"))
        _tree_flatten(1)
    assert not [w for w in seen if "LeafSpec" in str(w.message)]
