"""The optimisers: fused AdamW (the same updates as torch's default AdamW) and the reference's BertAdam, checked
against a hand computation, with their schedules and their wiring into the modules and the trainer."""

import pytest
import torch

from tinydistill.optim import OptimizerSettings
from tinydistill.optim import build_optimizer_and_scheduler, parameter_groups


def _train(fused_default: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(100, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    if fused_default:
        opt = build_optimizer_and_scheduler(model.named_parameters(), 1e-2, 0.01, total_steps=20,
                                           warmup_proportion=0.0, schedule="constant")["optimizer"]
        assert all(g["fused"] for g in opt.param_groups)
    else:  # torch's default implementation, same groups and hyper-parameters
        opt = torch.optim.AdamW(parameter_groups(model.named_parameters(), 0.01), lr=1e-2, eps=1e-6)
        assert not any(g.get("fused") for g in opt.param_groups)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        x = torch.randint(0, 100, (4, 5), generator=gen)
        model(x).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    return [p.detach().clone() for p in model.parameters()]


def test_fused_adamw_matches_the_default_implementation():
    fused, default = _train(True), _train(False)
    assert any(not torch.equal(f, p) for f, p in zip(fused, _initial()))  # the weights moved
    for f, d in zip(fused, default):
        torch.testing.assert_close(f, d, rtol=1e-5, atol=1e-6)


def _initial() -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(100, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    return [p.detach().clone() for p in model.parameters()]


# --- BertAdam, the reference optimiser (stage.optimizer=bertadam) -------------------------------------------------

B1, B2, EPS, WD, MAX_NORM = 0.9, 0.999, 1e-6, 0.01, 1.0


def _tiny_params() -> list[tuple[str, torch.nn.Parameter]]:
    """A weight (decayed), a bias and a LayerNorm weight (not decayed), as named in BERT."""
    gen = torch.Generator().manual_seed(0)
    return [
        ("dense.weight", torch.nn.Parameter(torch.randn(2, 3, generator=gen))),
        ("dense.bias", torch.nn.Parameter(torch.randn(2, generator=gen))),
        ("LayerNorm.weight", torch.nn.Parameter(torch.randn(2, generator=gen))),
    ]


def _grads(step: int) -> list[torch.Tensor]:
    """Per tensor: a gradient far above the clipping norm, one below it, one around it (above it at step 0)."""
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(2, 3, generator=gen) * 5.0, torch.randn(2, generator=gen) * 0.1,
            torch.randn(2, generator=gen) * 0.8 + 0.8]


def _bertadam(named, total_steps, schedule, warmup):
    from tinydistill.optim import BertAdam

    built = build_optimizer_and_scheduler(named, lr=0.1, weight_decay=WD, total_steps=total_steps,
                                          warmup_proportion=warmup, schedule=schedule, optimizer="bertadam",
                                          max_grad_norm=MAX_NORM)
    assert isinstance(built["optimizer"], BertAdam)
    return built["optimizer"], built["lr_scheduler"]["scheduler"]


def test_one_bertadam_step_equals_the_hand_computation():
    named = _tiny_params()
    before = [p.detach().clone() for _, p in named]
    opt, _ = _bertadam(named, total_steps=10, schedule="none", warmup=0.0)
    grads = _grads(0)
    for (_, p), g in zip(named, grads):
        p.grad = g.clone()
    opt.step()
    lr = 0.1
    for (name, p), g, p0 in zip(named, grads, before):
        # this tensor's own norm decides its clipping; no bias correction: m = 0.1 g, v = 0.001 g^2
        g = g * min(1.0, MAX_NORM / (g.norm().item() + 1e-6))
        update = (1 - B1) * g / ((1 - B2) ** 0.5 * g.abs() + EPS)
        if name == "dense.weight":  # biases and LayerNorm weights are not decayed
            update = update + WD * p0
        torch.testing.assert_close(p.detach(), p0 - lr * update, rtol=1e-6, atol=1e-7)
    # Clipping is per tensor and in place: the large gradients now have norm 1, the small one is untouched.
    assert abs(named[0][1].grad.norm().item() - 1.0) < 1e-5
    assert abs(named[2][1].grad.norm().item() - 1.0) < 1e-5
    assert torch.equal(named[1][1].grad, grads[1])
    # The first step is about (1 - b1) / sqrt(1 - b2) = 3.16 times the learning rate per element, not 1x (Adam).
    moved = (named[1][1].detach() - before[1]).abs()
    torch.testing.assert_close(moved, torch.full_like(moved, lr * 0.1 / 0.001 ** 0.5), rtol=1e-3, atol=0)


def test_several_bertadam_steps_with_the_reference_warmup_linear_schedule():
    named = _tiny_params()
    params = [p.detach().clone() for _, p in named]
    total, warmup = 10, 0.15  # warm-up over 1.5 steps: not a whole number, which transformers' linear rounds down
    opt, scheduler = _bertadam(named, total_steps=total, schedule="warmup_linear", warmup=warmup)
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for k in range(6):
        grads = _grads(k)
        for (_, p), g in zip(named, grads):
            p.grad = g.clone()
        opt.step()
        scheduler.step()
        # the reference's warmup_linear at progress x = k / 10: x / 0.15 while x < 0.15, then (1 - x) / 0.85
        factor = k / 1.5 if k < 1.5 else (10 - k) / 8.5
        lr = 0.1 * factor
        for i, ((name, _), g) in enumerate(zip(named, grads)):
            g = g * min(1.0, MAX_NORM / (g.norm().item() + 1e-6))
            m[i] = B1 * m[i] + (1 - B1) * g
            v[i] = B2 * v[i] + (1 - B2) * g * g
            update = m[i] / (v[i].sqrt() + EPS)
            if name == "dense.weight":
                update = update + WD * params[i]
            params[i] = params[i] - lr * update
        for (_, p), expected in zip(named, params):
            torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
    assert k == 5 and not torch.equal(params[0], _tiny_params()[0][1].detach())


def test_reference_schedules_against_transformers():
    from transformers import get_scheduler

    from tinydistill.optim import build_scheduler

    def factors(schedule, warmup, total=10, steps=12):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = (get_scheduler(schedule, opt, num_warmup_steps=int(warmup * total), num_training_steps=total)
                 if schedule in ("linear", "constant") else build_scheduler(opt, schedule, warmup, total))
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    # A whole number of warm-up steps: the reference's warmup_linear is transformers' linear; none is constant.
    assert factors("warmup_linear", 0.2) == pytest.approx(factors("linear", 0.2), abs=1e-12)
    assert factors("none", 0.2) == factors("constant", 0.2) == [1.0] * 12
    # 1.5 warm-up steps: transformers warms up over 1 step, the reference over 1.5 (step 1 at 2/3, not 1).
    ref, hf = factors("warmup_linear", 0.15), factors("linear", 0.15)
    assert ref[:3] == pytest.approx([0.0, 1 / 1.5, 8 / 8.5]) and hf[:3] == pytest.approx([0.0, 1.0, 8 / 9])
    assert ref[10:] == [0.0, 0.0]  # past the planned steps the reference keeps 0


def test_bertadam_turns_lightnings_global_clipping_off(compose_cfg):
    from tinydistill.trainer import TrainerPlan, build_trainer

    for stage in ("finetune", "mlm", "general", "task"):
        assert compose_cfg(f"stage={stage}").stage.optimizer == "adamw"  # the default stays AdamW
    assert build_trainer(TrainerPlan.from_config(compose_cfg("stage=task", "logger=none"))).gradient_clip_val == 1.0
    assert build_trainer(TrainerPlan.from_config(compose_cfg("stage=task", "logger=none", "stage.optimizer=bertadam"))).gradient_clip_val is None


def _gold_module(optimizer):
    from transformers import BertConfig, BertForSequenceClassification

    from tinydistill.data.tasks import get_task
    from tinydistill.modules.task import TaskDistillModule

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    optim = OptimizerSettings(lr=1e-3, optimizer=optimizer, max_grad_norm=1.0, schedule="constant",
                              warmup_proportion=0.0)
    return TaskDistillModule(BertForSequenceClassification(config), get_task("rte"), "gold", optim)


def _batches(n=4):
    gen = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(1, 50, (4, 8), generator=gen),
             "attention_mask": torch.ones(4, 8, dtype=torch.long),
             "token_type_ids": torch.zeros(4, 8, dtype=torch.long),
             "labels": torch.randint(0, 2, (4,), generator=gen)}
            for _ in range(n)]


@pytest.mark.parametrize("optimizer", ["adamw", "bertadam"])
def test_configure_optimizers_honours_stage_optimizer(optimizer):
    import lightning as L
    from torch.utils.data import DataLoader

    from tinydistill.optim import BertAdam

    module = _gold_module(optimizer)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(module, train_dataloaders=DataLoader(_batches(), batch_size=None))
    opt = trainer.optimizers[0]
    assert isinstance(opt, BertAdam if optimizer == "bertadam" else torch.optim.AdamW)
    if optimizer == "bertadam":
        p = module.classifier.classifier.weight
        assert opt.state[p]["step"] == 2 and opt.param_groups[0]["max_grad_norm"] == 1.0


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_mixed_precision_with_clipping_trains_with_the_unfused_adamw(precision):
    """Lightning refuses to clip the gradients of an optimiser that unscales them itself (the fused AdamW), so under
    trainer.precision=bf16-mixed (trainer=gpu: 16-mixed) the modules build the unfused one; float32 keeps it fused."""
    import lightning as L
    from torch.utils.data import DataLoader

    module = _gold_module("adamw")
    before = module.classifier.classifier.weight.detach().clone()
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu", precision=precision,
                        gradient_clip_val=1.0)
    trainer.fit(module, train_dataloaders=DataLoader(_batches(), batch_size=None))
    fused = [g["fused"] for g in trainer.optimizers[0].param_groups]
    assert fused == [precision == "32-true" or None] * len(fused)
    assert trainer.global_step == 2 and not torch.equal(module.classifier.classifier.weight, before)


def test_bertadam_with_a_clipping_trainer_is_one_clear_error():
    import lightning as L

    from tinydistill.errors import ConfigError

    module = _gold_module("bertadam")
    module.trainer = L.Trainer(gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, accelerator="cpu")
    with pytest.raises(ConfigError, match="trainer.gradient_clip_val"):
        module.configure_optimizers()
    with pytest.raises(ConfigError, match="stage.optimizer='sgd'"):
        build_optimizer_and_scheduler(_tiny_params(), 0.1, 0.0, total_steps=5, optimizer="sgd")
