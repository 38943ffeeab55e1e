"""Test-side TorchScript files: NVIDIA's two metric networks rebuilt with the module tree of
the published files (attribute names, tensor shapes, block structure, what `forward` does,
as documented in eval/features/nvidia_inception.py and nvidia_vgg16.py), with deterministic
random weights, and a hostile TorchScript file that writes files when loaded and when run.

Written independently of the product modules (own blocks, own forward), so a product
mapping error shows up as an output mismatch. Only tests call torch.jit on these files.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


def _tf_style_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / size
    grid = F.affine_grid(theta.unsqueeze(0).repeat(batch, 1, 1), [batch, channels, size, size],
                         False)
    return F.grid_sample(x, grid, "bilinear", "border", False)


# ---- Inception (inception-2015-12-05.pt layout) ----------------------------------------------

class NvConv(nn.Module):
    """Conv (no bias) + TF batch norm without gamma (beta, mean, var; eps 1e-3) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        self.stride, self.padding = [stride, stride], [ph, pw]
        self.weight = nn.Parameter(torch.randn(cout, cin, kh, kw) * (2 / (cin * kh * kw)) ** 0.5)
        self.beta = nn.Parameter(torch.randn(cout) * 0.2)
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))
        self.calibrate = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        if self.calibrate:
            self.mean.copy_(x.mean(dim=(0, 2, 3)))
            self.var.copy_(x.var(dim=(0, 2, 3), unbiased=False))
        x = F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 0.001)
        return F.relu(x)


def _seq(**modules) -> nn.Sequential:
    seq = nn.Sequential()
    for name, module in modules.items():
        seq.add_module(name, module)
    return seq


def _avg3() -> nn.Module:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class NvBlockA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.conv = NvConv(cin, 64, 1)
        self.tower = _seq(conv=NvConv(cin, 48, 1), conv_1=NvConv(48, 64, 5, padding=2))
        self.tower_1 = _seq(conv=NvConv(cin, 64, 1), conv_1=NvConv(64, 96, 3, padding=1),
                            conv_2=NvConv(96, 96, 3, padding=1))
        self.tower_2 = _seq(pool=_avg3(), conv=NvConv(cin, pool_features, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class NvBlockB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.conv = NvConv(cin, 384, 3, stride=2)
        self.tower = _seq(conv=NvConv(cin, 64, 1), conv_1=NvConv(64, 96, 3, padding=1),
                          conv_2=NvConv(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class NvBlockC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.conv = NvConv(cin, 192, 1)
        self.tower = _seq(conv=NvConv(cin, c7, 1), conv_1=NvConv(c7, c7, (1, 7), padding=(0, 3)),
                          conv_2=NvConv(c7, 192, (7, 1), padding=(3, 0)))
        self.tower_1 = _seq(conv=NvConv(cin, c7, 1),
                            conv_1=NvConv(c7, c7, (7, 1), padding=(3, 0)),
                            conv_2=NvConv(c7, c7, (1, 7), padding=(0, 3)),
                            conv_3=NvConv(c7, c7, (7, 1), padding=(3, 0)),
                            conv_4=NvConv(c7, 192, (1, 7), padding=(0, 3)))
        self.tower_2 = _seq(pool=_avg3(), conv=NvConv(cin, 192, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class NvBlockD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.tower = _seq(conv=NvConv(cin, 192, 1), conv_1=NvConv(192, 320, 3, stride=2))
        self.tower_1 = _seq(conv=NvConv(cin, 192, 1),
                            conv_1=NvConv(192, 192, (1, 7), padding=(0, 3)),
                            conv_2=NvConv(192, 192, (7, 1), padding=(3, 0)),
                            conv_3=NvConv(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class NvBlockE(nn.Module):
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.conv = NvConv(cin, 320, 1)
        self.tower_conv = NvConv(cin, 384, 1)
        self.tower_mixed_conv = NvConv(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = NvConv(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = NvConv(cin, 448, 1)
        self.tower_1_conv_1 = NvConv(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = NvConv(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = NvConv(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else _avg3()
        self.tower_2_conv = NvConv(cin, 192, 1)

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


class NvInceptionV3(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = _seq(
            conv=NvConv(3, 32, 3, stride=2), conv_1=NvConv(32, 32, 3),
            conv_2=NvConv(32, 64, 3, padding=1), pool0=nn.MaxPool2d(3, stride=2),
            conv_3=NvConv(64, 80, 1), conv_4=NvConv(80, 192, 3), pool1=nn.MaxPool2d(3, stride=2),
            mixed=NvBlockA(192, 32), mixed_1=NvBlockA(256, 64), mixed_2=NvBlockA(288, 64),
            mixed_3=NvBlockB(288), mixed_4=NvBlockC(768, 128), mixed_5=NvBlockC(768, 160),
            mixed_6=NvBlockC(768, 160), mixed_7=NvBlockC(768, 192), mixed_8=NvBlockD(768),
            mixed_9=NvBlockE(1280, max_pool=False), mixed_10=NvBlockE(2048, max_pool=True),
            pool2=nn.AvgPool2d(8, stride=8))
        self.output = nn.Linear(2048, 1008)
        nn.init.normal_(self.output.weight, std=0.05)
        nn.init.normal_(self.output.bias, std=0.5)

    def forward(self, img: torch.Tensor, return_features: bool = False,
                use_fp16: bool = False, no_output_bias: bool = False) -> torch.Tensor:
        x = _tf_style_resize(img.to(torch.float32), 299)
        x = (x - 128) / 128
        features = torch.reshape(self.layers(x), [-1, 2048]).to(torch.float32)
        if return_features:
            return features
        if no_output_bias:
            logits = F.linear(features, self.output.weight, None)
        else:
            logits = self.output(features)
        return F.softmax(logits, 1)


def _calibrate(model: nn.Module, forward_images, convs) -> None:
    """BatchNorm statistics from one batch of real images, layer by layer (the forward pass
    sets each layer's mean/var from its input batch before normalising)."""
    for conv in convs:
        conv.calibrate = True
    with torch.no_grad():
        forward_images()
    for conv in convs:
        conv.calibrate = False


def inception_module(seed: int, calibration: torch.Tensor) -> NvInceptionV3:
    """The Inception in NVIDIA's layout, seeded random weights, BN calibrated on `calibration`
    (uint8 photos)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = NvInceptionV3().eval()
    torch.random.set_rng_state(state)
    convs = [m for m in model.modules() if isinstance(m, NvConv)]
    _calibrate(model, lambda: model(calibration, return_features=True), convs)
    return model.requires_grad_(False)


# ---- VGG16 (vgg16.pt layout) --------------------------------------------------------------

VGG_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
NARROW_STAGES = ((8, 8), (16, 16), (16, 16, 16), (32, 32, 32), (32, 32, 32))


class NvVggConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * (2 / (cin * 9)) ** 0.5)
        self.bias = nn.Parameter(torch.randn(cout) * 0.05)

    def forward(self, x):
        return F.relu(F.conv2d(x, self.weight, self.bias, 1, 1))


class NvFc(nn.Module):
    def __init__(self, cin: int, cout: int, relu: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) * (2 / cin) ** 0.5)
        self.bias = nn.Parameter(torch.randn(cout) * 0.05)
        self.relu = relu

    def forward(self, x):
        x = F.linear(x.flatten(1), self.weight, self.bias)
        return F.relu(x) if self.relu else x


class NvVggLayers(nn.Module):
    def __init__(self, stages, fc_width: int, num_classes: int):
        super().__init__()
        cin, index = 3, 1
        for s, stage in enumerate(stages):
            for cout in stage:
                self.add_module(f"conv{index}", NvVggConv(cin, cout))
                cin, index = cout, index + 1
            self.add_module(f"pool{s + 1}", nn.MaxPool2d(2))
        self.fc1 = NvFc(cin * 49, fc_width, True)
        self.fc2 = NvFc(fc_width, fc_width, True)
        self.fc3 = NvFc(fc_width, num_classes, False)
        self.softmax = nn.Softmax(dim=1)


class NvVgg16(nn.Module):
    def __init__(self, stages, fc_width: int, num_classes: int):
        super().__init__()
        self.layers = NvVggLayers(stages, fc_width, num_classes)
        for k, stage in enumerate(stages):
            self.register_parameter(f"lpips{k}", nn.Parameter(torch.rand(stage[-1], 1, 1)))

    def _lpips_part(self, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        unit = f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + 1e-10)
        return torch.flatten(unit * torch.sqrt(w) / (f.shape[2] * f.shape[3]) ** 0.5, 1)

    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32)
        if resize_images:
            x = _tf_style_resize(x, 224)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        x = (x / 255 - mean) / std
        net = self.layers
        f1 = net.conv2(net.conv1(x))
        f2 = net.conv4(net.conv3(net.pool1(f1)))
        f3 = net.conv7(net.conv6(net.conv5(net.pool2(f2))))
        f4 = net.conv10(net.conv9(net.conv8(net.pool3(f3))))
        f5 = net.conv13(net.conv12(net.conv11(net.pool4(f4))))
        if return_lpips:
            return torch.cat([self._lpips_part(f1, self.lpips0), self._lpips_part(f2, self.lpips1),
                              self._lpips_part(f3, self.lpips2), self._lpips_part(f4, self.lpips3),
                              self._lpips_part(f5, self.lpips4)], 1)
        x = net.fc2(net.fc1(net.pool5(f5)))
        if return_features:
            return x
        return net.softmax(net.fc3(x))


def vgg16_module(seed: int, stages=NARROW_STAGES, fc_width: int = 64,
                 num_classes: int = 10) -> NvVgg16:
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = NvVgg16(stages, fc_width, num_classes).eval().requires_grad_(False)
    torch.random.set_rng_state(state)
    return model


def save_scripted(module: nn.Module, path) -> None:
    torch.jit.script(module).save(str(path))


# ---- a hostile TorchScript file ----------------------------------------------------------

class HostileForward(nn.Module):
    """Writes `marker` through torch.from_file(..., shared=True) when run."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.weight = nn.Parameter(torch.ones(2))

    def forward(self, img: torch.Tensor, return_features: bool = False,
                resize_images: bool = True, return_lpips: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        written = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8)
        written.fill_(65)
        return img.float().mean() * self.weight + written.float().sum() * 0


class HostileLoad(HostileForward):
    """Also writes `marker + '.load'` when loaded: torch.jit.load runs its __setstate__."""

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, torch.Tensor, bool]:
        return (self.marker, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, torch.Tensor, bool]) -> None:
        self.marker = state[0]
        self.training = state[2]
        written = torch.from_file(self.marker + ".load", shared=True, size=4, dtype=torch.uint8)
        written.fill_(66)
        self.weight = state[1] + written.float().sum() * 0
