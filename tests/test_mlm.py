"""stage=mlm: a masked-LM head for an encoder that has none."""

import json
import os

import torch
from transformers import AutoModelForMaskedLM, BertModel

from tinydistill.modules.mlm import masked_accuracy
from tinydistill.stages import run


def test_masked_accuracy_counts_only_masked_positions():
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    labels = torch.tensor([[1, -100, 0]])
    correct, total = masked_accuracy(logits, labels)
    assert (int(correct), int(total)) == (1, 2)


def test_tiny_mlm_stage_trains_head_only_and_exports(compose_cfg, tiny_bert, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("\n".join(f"The cat number {d} sat on mat {i} ." for i in range(6)) for d in range(30)))
    cfg = compose_cfg(
        "stage=mlm", f"teacher.name_or_path={tiny_bert}", f"stage.corpus.path={corpus}", "logger=csv",
        "stage.max_steps=4", "stage.batch_size=4", "stage.val_size=8", "stage.val_every_n_steps=2",
        "stage.max_seq_length=32",
    )
    result = run(cfg)
    out = result["output_dir"]
    assert out.endswith("mlm/minilm_l6")
    mlm = AutoModelForMaskedLM.from_pretrained(out)
    assert type(mlm).__name__ == "BertForMaskedLM"
    # Head only: the encoder is exactly the original one; the head's bias moved from zero.
    original = BertModel.from_pretrained(tiny_bert)
    exported = mlm.bert.state_dict()
    compared = [n for n, _ in original.named_parameters() if n in exported]
    assert len(compared) > 20
    for name, a in original.named_parameters():
        if name in exported:
            assert torch.equal(a, exported[name]), name
    assert mlm.cls.predictions.bias.abs().sum() > 0
    info = json.loads(open(os.path.join(out, "mlm.json")).read())
    assert info["steps"] == 4 and 0.0 <= info["held_out"]["masked_accuracy"] <= 1.0
    assert info["train_encoder"] is False


def test_masked_only_loss_equals_the_models_own_loss(tiny_bert):
    from tinydistill.modules.mlm import masked_lm_loss

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    torch.manual_seed(0)
    ids = torch.randint(1000, 2000, (3, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5], labels[2, 0], labels[2, 11] = 11, 22, 33, 44
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        loss, logits, target = masked_lm_loss(model, batch)
        full = model(**batch)
    assert torch.allclose(loss, full.loss, atol=1e-5)
    assert torch.allclose(logits, full.logits[labels != -100], atol=1e-5)
    assert target.tolist() == [11, 22, 33, 44]
