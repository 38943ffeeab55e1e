import math

import pytest
import torch

from eval import registry
from eval.registry import MetricContext, compute_metric, get_metric, register_metric
from eval.sampling import iterate_generated, quantize
from ffhq_tools.errors import FfhqToolsError


class TinyG(torch.nn.Module):
    """Follows the generator contract: z -> tanh(linear) image."""

    def __init__(self, z_dim=8, resolution=8, c_dim=0):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, z_dim, 1
        self.img_resolution, self.img_channels = resolution, 3
        self.fc = torch.nn.Linear(z_dim, 3 * resolution * resolution)

    def forward(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None,
                noise_mode="random"):
        x = self.fc(z) * truncation_psi
        if noise_mode == "random":
            x = x + 0.1 * torch.randn_like(x)
        return torch.tanh(x).view(-1, 3, self.img_resolution, self.img_resolution)


def test_register_compute_and_record():
    @register_metric("test_counting", protocol={"num_gen": 100}, needs=("generator",),
                     weights=(), description="counts generated images")
    def counting(ctx):
        num = ctx.count("num_gen", ctx.num_gen)
        seen = sum(b.shape[0] for b in iterate_generated(ctx.generator, num, 7, ctx.seed, "cpu"))
        return {"seen": seen}

    try:
        ctx = MetricContext(generator=TinyG(), num_gen=20, seed=3)
        row = compute_metric("test_counting", ctx)
        assert row["results"] == {"seen": 20.0}
        assert row["protocol"]["num_gen"] == 20 and row["seed"] == 3
        assert "test_counting" in registry.list_metrics()
        with pytest.raises(FfhqToolsError, match="--network"):
            compute_metric("test_counting", MetricContext())
    finally:
        registry.METRICS.pop("test_counting")


def test_unknown_metric_suggests_close_names():
    register_metric("test_close_name", protocol={}, needs=(), weights=(), description="x")(dict)
    try:
        with pytest.raises(registry.UnknownMetricError, match="test_close_name"):
            get_metric("test_close_nam")
    finally:
        registry.METRICS.pop("test_close_name")


def test_non_finite_result_is_an_error():
    @register_metric("test_nan", protocol={}, needs=(), weights=(), description="nan")
    def nan_metric(ctx):
        return {"value": math.nan}

    try:
        with pytest.raises(FfhqToolsError, match="non-finite"):
            compute_metric("test_nan", MetricContext())
    finally:
        registry.METRICS.pop("test_nan")


def test_generation_is_deterministic_and_quantised_like_the_reference():
    torch.manual_seed(0)
    G = TinyG()
    a = torch.cat(list(iterate_generated(G, 10, 4, seed=5, device="cpu")))
    b = torch.cat(list(iterate_generated(G, 10, 4, seed=5, device="cpu")))
    c = torch.cat(list(iterate_generated(G, 10, 4, seed=6, device="cpu")))
    assert a.dtype == torch.uint8 and a.shape == (10, 3, 8, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0])
    assert quantize(x).tolist() == [0, 0, 128, 255, 255]


def test_conditional_generator_needs_labels():
    with pytest.raises(FfhqToolsError, match="c_dim"):
        next(iterate_generated(TinyG(c_dim=2), 4, 4, 0, "cpu"))


def test_metrics_md_is_the_registry_output(capsys):
    """METRICS.md documents every registered protocol exactly as the code runs it."""
    from pathlib import Path

    from ffhq_tools.cli import main

    assert main(["metrics", "--list", "--markdown"]) == 0
    generated = capsys.readouterr().out
    committed = (Path(__file__).resolve().parents[1] / "METRICS.md").read_text()
    assert committed == generated, "regenerate: ffhq-tools metrics --list --markdown > METRICS.md"
    assert "| `num_gen` | `50000` |" in generated and "## `pr50k3_full`" in generated
