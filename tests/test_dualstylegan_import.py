"""Official DualStyleGAN files -> our formats: generator.pt in the published layout loads
strictly and renders what the source network renders; code dicts are read without running
their pickles; samplers convert; the CLI names the file in its errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from dualstylegan_fixtures import (
    SMALL,
    codes,
    official_key_count,
    official_state,
    small_net,
    write_code_dict,
    write_generator_pt,
    write_sampler_pt,
)

from ffhq_tools.cli import main
from ffhq_tools.errors import FfhqToolsError
from models.checkpoint import load_checkpoint
from models.configs import build_networks
from models.dualstylegan import AdaResBlock
from models.dualstylegan_codes import load_samplers, read_codes
from models.legacy import UnsafePickleError
from models.legacy_import import CheckpointImportError, import_checkpoint


def trained_looking(net):
    """Perturb every parameter so a mis-mapped tensor shows in the images."""
    torch.manual_seed(5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for block in net.res:
            if isinstance(block, AdaResBlock):
                block.conv[0].weight.mul_(50)
    return net


def test_the_published_key_layout_at_full_scale():
    with torch.device("meta"):
        net = build_networks(SMALL.replace(z_dim=512, w_dim=512, channel_base=32768,
                                           channel_max=512), 1024)[0]
    state = official_state(net)
    assert len(state) == official_key_count(1024)
    assert {"style.1.weight", "style.2.bias", "res.6.conv2.0.weight", "res.0.norm.style.bias",
            "res.7.weight", "res.17.bias", "generator.style.8.weight",
            "generator.noises.noise_16"} <= set(state)
    assert "res.18.weight" not in state and "style.3.weight" not in state
    assert state["res.3.norm.style.weight"].shape == (1024, 512)
    assert state["res.7.weight"].shape == (512, 512)


def test_generator_pt_loads_strictly_and_renders_like_the_source(tmp_path):
    source = trained_looking(small_net())
    write_generator_pt(tmp_path / "generator.pt", source)
    result = import_checkpoint(tmp_path / "generator.pt", tmp_path / "ours.pt")
    assert result.source_format == "dualstylegan"
    mapped = {src for net, src, *_ in result.mapped}
    assert mapped == {k for k in official_state(source)
                      if not k.endswith("kernel")}  # the fixed FIR filters are not parameters
    assert any("w_avg" in note for note in result.notes)
    G = load_checkpoint(tmp_path / "ours.pt").G_ema.eval()
    z, ex = codes(source)
    weights = [0.8] * 7 + [0.6] * 3
    with torch.no_grad():
        expected = source(z, ex, interp_weights=weights, noise_mode="const")
        ours = G(z, ex, interp_weights=weights, noise_mode="const")
    assert torch.equal(ours, expected)


def test_pretrain_snapshot_with_g_and_d(tmp_path):
    torch.manual_seed(0)
    net, D = build_networks(SMALL, 64)
    write_generator_pt(tmp_path / "pretrain.pt", net, D=D, g=small_net(seed=3))
    import_checkpoint(tmp_path / "pretrain.pt", tmp_path / "ours.pt")
    ckpt = load_checkpoint(tmp_path / "ours.pt")
    assert torch.equal(ckpt.D.b64.conv0.weight, D.b64.conv0.weight)
    assert torch.equal(ckpt.G.res[7].weight, small_net(seed=3).res[7].weight)
    assert torch.equal(ckpt.G_ema.res[7].weight, net.res[7].weight)


@pytest.mark.parametrize("change,message", [
    ("extra", "res.99.weight"), ("missing", "parameters missing"),
    ("res_index", "res_index 6"), ("shape", "has shape")])
def test_layout_errors_name_the_tensor_and_the_file(tmp_path, change, message):
    state = official_state(small_net())
    if change == "extra":
        state["res.99.weight"] = torch.zeros(3)
    elif change == "missing":
        del state["style.2.bias"]
    elif change == "res_index":
        for name in [k for k in state if k.startswith("res.6.")]:
            del state[name]
        state["res.6.weight"], state["res.6.bias"] = state["res.7.weight"], state["res.7.bias"]
    else:
        state["res.8.weight"] = torch.zeros(5, 5)
    torch.save({"g_ema": state}, tmp_path / "generator.pt")
    with pytest.raises(CheckpointImportError, match=message) as info:
        import_checkpoint(tmp_path / "generator.pt", tmp_path / "ours.pt")
    assert "generator.pt" in str(info.value)


def test_official_code_dict_reads_without_allow_pickle(tmp_path):
    written = write_code_dict(tmp_path / "exstyle_code.npy", ["a.jpg", "b.png"], 10, 32)
    codes_read = read_codes(tmp_path / "exstyle_code.npy")
    assert codes_read.names == ["a.jpg", "b.png"]
    assert np.array_equal(codes_read.codes, np.concatenate([written["a.jpg"], written["b.png"]]))


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_a_code_npy_carrying_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload-ran"
    np.save(tmp_path / "evil.npy", {"a.jpg": _Payload(marker)}, allow_pickle=True)
    with pytest.raises(UnsafePickleError, match="evil.npy.*builtins.exec"):
        read_codes(tmp_path / "evil.npy")
    assert not marker.exists()
    np.load(tmp_path / "evil.npy", allow_pickle=True)  # the plain loader does run it
    assert marker.read_text() == "ran"


def test_malformed_code_files_are_named(tmp_path):
    np.save(tmp_path / "list.npy", np.array([1, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(FfhqToolsError, match="list.npy.*0-d array"):
        read_codes(tmp_path / "list.npy")
    np.save(tmp_path / "ints.npy", {"a": np.zeros((1, 3, 4), np.int64)}, allow_pickle=True)
    with pytest.raises(FfhqToolsError, match="ints.npy.*not a float array"):
        read_codes(tmp_path / "ints.npy")
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "ints.npy").read_bytes()[:150])
    with pytest.raises(FfhqToolsError, match="trunc.npy"):
        read_codes(tmp_path / "trunc.npy")


def test_import_checkpoint_cli_converts_codes_and_samplers(tmp_path, capsys):
    written = write_code_dict(tmp_path / "refined_exstyle_code.npy", ["s0.jpg", "s1.jpg"], 10, 32)
    assert main(["import-checkpoint", str(tmp_path / "refined_exstyle_code.npy"),
                 str(tmp_path / "exstyle.npz")]) == 0
    converted = np.load(tmp_path / "exstyle.npz", allow_pickle=False)
    assert list(converted["names"]) == ["s0.jpg", "s1.jpg"]
    assert np.array_equal(converted["codes"][1], written["s1.jpg"][0])
    assert main(["import-checkpoint", str(tmp_path / "refined_exstyle_code.npy"),
                 str(tmp_path / "exstyle.pt")]) == 2
    assert "exstyle.pt" in capsys.readouterr().err

    write_sampler_pt(tmp_path / "sampler.pt", 7, 3, 32)
    assert main(["import-checkpoint", str(tmp_path / "sampler.pt"),
                 str(tmp_path / "sampler-ours.pt")]) == 0
    samplers = load_samplers(tmp_path / "sampler-ours.pt")
    official = torch.load(tmp_path / "sampler.pt", weights_only=True)
    noise = torch.randn(4, 128)
    with torch.no_grad():
        x = official["color"]
        h = torch.relu(torch.nn.functional.batch_norm(
            noise @ x["lin1.weight"].T, x["bn1.running_mean"], x["bn1.running_var"],
            x["bn1.weight"], x["bn1.bias"]))
        h = torch.relu(torch.nn.functional.batch_norm(
            h @ x["lin2.weight"].T, x["bn2.running_mean"], x["bn2.running_var"],
            x["bn2.weight"], x["bn2.bias"]))
        assert torch.allclose(samplers["color"](noise), h @ x["lin_out.weight"].T, atol=1e-5)
    assert samplers["structure"].lin_out.out_features == 7 * 32


def test_pickled_sampler_with_code_is_refused(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('should-not-exist', 'w')",))

    with open(tmp_path / "sampler.pt", "wb") as f:
        pickle.dump({"color": Evil(), "structure": {}}, f)
    assert main(["import-checkpoint", str(tmp_path / "sampler.pt"),
                 str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "sampler.pt" in err and "exec" in err


def test_psp_encoder_is_refused_by_name(tmp_path, capsys):
    torch.save({"state_dict": {"encoder.input_layer.0.weight": torch.zeros(1)},
                "opts": {"output_size": 1024}, "latent_avg": torch.zeros(18, 512)},
               tmp_path / "encoder.pt")
    assert main(["import-checkpoint", str(tmp_path / "encoder.pt"),
                 str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "encoder.pt" in err and "pSp encoder" in err
