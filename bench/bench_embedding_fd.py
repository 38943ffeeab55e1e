"""End-to-end folder -> FD-DINOv2 and folder -> CLIP-FID: ours vs torch-fidelity 0.4, same weights.

Two folders of 256x256 PNG photo crops (bench_fid's). Each network gets one file of seeded
architecture-exact weights (runs/bench-fd/weights/). torch-fidelity cannot read a DINOv2 file
(its DINOv2 extractor only loads through torch.hub, which is offline here) and reads CLIP only
as a TorchScript archive, so its loaders are fed the same weights in-process: `torch.hub.load`
returns timm's `vit_large_patch14_dinov2` (the same architecture) holding our file's tensors,
and its CLIP download returns our file's state dict. Everything else, folder reading, its TF1
resize, normalisation, batching and its Frechet distance, is torch-fidelity's own.

Ours runs in its `torch-fidelity` mode (the same resize, so the numbers must agree) and in the
network's default mode (`dgm-eval` / `clean-fid`, PIL resizes) for timing. Each run is a
fresh spawned process (peak RSS = that process; the driver stays small because Linux carries
a parent's ru_maxrss into a spawned child).

Run: FFHQ_BENCH_FD_NUM=100 .venv/bin/python -m bench bench_embedding_fd
     (FFHQ_BENCH_FD_NETWORKS=clip-vit-b-32,dinov2-vit-l-14 by default)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.bench_fid import ROOT as FID_ROOT
from bench.bench_fid import _in_child, _peak_mib, _prepare

ROOT = Path("runs") / "bench-fd"
TIMM_DINOV2 = {"dinov2-vit-s-14": "vit_small_patch14_dinov2",
               "dinov2-vit-b-14": "vit_base_patch14_dinov2",
               "dinov2-vit-l-14": "vit_large_patch14_dinov2",
               "dinov2-vit-g-14": "vit_giant_patch14_dinov2"}


def _weights_file(name: str) -> Path:
    """Seeded weights of `name`: a DINOv2 state dict, or a whole open_clip CLIP state dict
    (OpenAI key names) with a seeded image encoder."""
    import torch

    path = ROOT / "weights" / f"{name}.pt"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.startswith("dinov2"):
        from eval.features.dinov2 import CONFIGS, seeded_state_dict

        torch.save(seeded_state_dict(CONFIGS[name], 7), path)
        return path
    import open_clip

    from eval.features.clip import VIT_B_32, seeded_visual_state

    model = open_clip.create_model("ViT-B-32", pretrained=None, quick_gelu=True)
    state = model.state_dict()
    state.update({f"visual.{k}": v for k, v in seeded_visual_state(VIT_B_32, 7).items()})
    torch.save(state, path)
    return path


def run_ours(first: str, second: str, name: str, path: str, cache: str, mode: str):
    from eval.fid import fid_between
    from eval.registry import MetricContext

    start = time.perf_counter()
    ctx = MetricContext(features=name, embedding_mode=mode, progress=False,
                        weights_overrides={name: Path(path)}, stats_cache=Path(cache) / mode)
    value = fid_between(first, second, ctx)["fid"]
    return value, time.perf_counter() - start, _peak_mib()


def _timm_dinov2(name: str, path: str):
    import timm
    import torch

    from eval.features import dinov2

    state = torch.load(path, weights_only=True)
    mapped = {key.replace("mlp.w12", "mlp.fc1").replace("mlp.w3", "mlp.fc2"): value
              for key, value in state.items() if key != "mask_token"}
    mapped["pos_embed"] = dinov2.interpolate_patch_positions(state["pos_embed"], 16,
                                                             dinov2.TRAIN_GRID)
    model = timm.create_model(TIMM_DINOV2[name], pretrained=False, img_size=224, num_classes=0)
    model.load_state_dict(mapped, strict=True)
    return model.eval()


class _StateDictHolder:
    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return self.state


def _feed_torch_fidelity(name: str, path: str) -> None:
    import torch
    import torch_fidelity.feature_extractor_clip as tf_clip

    if name.startswith("dinov2"):
        model = _timm_dinov2(name, path)
        torch.hub.load = lambda repo, entry, *args: model
    else:
        state = torch.load(path, weights_only=True)
        tf_clip.load_state_dict_from_url = lambda *args, **kwargs: _StateDictHolder(state)


def run_torch_fidelity(first: str, second: str, name: str, path: str, cache: str, mode: str):
    import torch_fidelity

    _feed_torch_fidelity(name, path)
    start = time.perf_counter()
    value = torch_fidelity.calculate_metrics(input1=first, input2=second, fid=True, cuda=False,
                                             feature_extractor=name, verbose=False, cache=False)
    return value["frechet_inception_distance"], time.perf_counter() - start, _peak_mib()


def bench_network(name: str, num: int, first: Path, second: Path) -> None:
    path = _in_child(_weights_file, name)  # a child: ru_maxrss survives exec into the runs
    default = "clean-fid" if name.startswith("clip") else "dgm-eval"
    cache = ROOT / f"stats-{time.time_ns()}"
    runs = (("ours torch-fidelity", run_ours, "torch-fidelity"),
            (f"ours {default}", run_ours, default),
            ("torch-fidelity", run_torch_fidelity, "torch-fidelity"))
    if os.environ.get("FFHQ_BENCH_FD_PEERS_FIRST"):
        runs = runs[2:] + runs[:2]
    results = {}
    for label, fn, mode in runs:
        results[label] = _in_child(fn, str(first), str(second), name, str(path), str(cache),
                                   mode)
        fd, seconds, peak = results[label]
        print(f"{name} {num}+{num} images 256px: {label:22s} {seconds:7.1f} s  peak RSS "
              f"{peak:6.0f} MiB  FD {fd:.6f}", flush=True)
    ours, peer = results["ours torch-fidelity"], results["torch-fidelity"]
    print(f"{name}: agreement (same resize) {abs(ours[0] - peer[0]) / abs(peer[0]):.1e}; "
          f"speed-up {peer[1] / ours[1]:.2f}x (torch-fidelity mode), "
          f"{peer[1] / results[f'ours {default}'][1]:.2f}x ({default} mode); peak RSS "
          f"{ours[2]:.0f} vs {peer[2]:.0f} MiB", flush=True)


def main() -> None:
    num = int(os.environ.get("FFHQ_BENCH_FD_NUM", "100"))
    names = os.environ.get("FFHQ_BENCH_FD_NETWORKS", "clip-vit-b-32,dinov2-vit-l-14")
    first, second, _ = _prepare(num)
    assert first.parent == FID_ROOT
    for name in names.split(","):
        bench_network(name.strip(), num, first, second)


if __name__ == "__main__":
    main()
