"""`demo --dualstylegan`: the whole DualStyleGAN recipe on the quick demo's own generator, with
seeded VGG16 / VGG19 files through --weights (slow), and its refusal without them (fast)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ffhq_tools.demo import STAGE_NEEDS, DemoOptions, DemoState, stage_names
from ffhq_tools.demo_dualstylegan import POSTER_LEVELS, check_weights, stylised
from ffhq_tools.errors import FfhqToolsError


def test_the_stage_runs_only_when_asked():
    assert "dualstylegan" not in stage_names(DemoOptions())
    assert stage_names(DemoOptions(dualstylegan=True))[-1] == "dualstylegan"
    assert STAGE_NEEDS["dualstylegan"] == ("train",)


def test_style_look_is_posterised_and_colour_shifted():
    ramp = np.repeat(np.linspace(0, 255, 256).round().astype(np.uint8)[None, :, None], 3, 2)
    out = stylised(ramp).astype(int)
    assert len(np.unique(out[..., 2])) == POSTER_LEVELS + 1  # blue keeps its levels
    assert (out[..., 0] >= out[..., 2]).all() and out[0, 0, 0] > 80  # red lifted


def test_missing_vgg_weights_stop_before_any_work(tmp_path):
    state = DemoState(tmp_path, DemoOptions(quick=True, dualstylegan=True).resolved())
    with pytest.raises(FfhqToolsError, match="vgg16"):
        check_weights(state)
    assert not (tmp_path / "dualstylegan").exists()


@pytest.mark.slow
def test_quick_demo_with_dualstylegan(tmp_path):
    from dualstylegan_train_fixtures import write_torchvision_vgg19
    from vgg_helpers import write_random_vgg16

    write_random_vgg16(tmp_path / "vgg16.pth")
    write_torchvision_vgg19(tmp_path / "vgg19.pth")
    options = DemoOptions(outdir=tmp_path / "demo", quick=True, progress=False,
                          dualstylegan=True, weights=(f"vgg16={tmp_path / 'vgg16.pth'}",
                                                      f"vgg19={tmp_path / 'vgg19.pth'}"))
    from ffhq_tools.demo import run_demo

    state = run_demo(options)
    assert [(s.name, s.status) for s in state.stages][-1] == ("dualstylegan", "done"), \
        state.stages
    folder = state.run_dir / "dualstylegan"
    figure = Image.open(folder / "content-style-result.png")
    assert figure.width * 4 == figure.height * 3  # content | exemplar | result, 4 rows
    for stage in ("g-prime", "pretrain", "finetune"):
        assert list((folder / stage).glob("*/network-snapshot-*.pt")), stage
    assert (folder / "codes" / "exstyle_code.npy").exists()
    html = (state.run_dir / "report.html").read_text()
    assert "DualStyleGAN: content" in html
