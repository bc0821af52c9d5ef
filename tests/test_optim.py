"""The optimiser: fused AdamW where possible, the same updates as torch's default AdamW."""

import torch

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
