"""Standard trunks written the way their libraries write them (torchvision, Hugging Face
wav2vec2), at reduced widths: the receptive field depends on kernels, strides, paddings
and dilations only, never on channel counts. No torchvision here; each builder also
returns its layer list ``(kernel, stride)`` in order, from which the tests derive R and
the stride by hand (Araujo et al., Distill 2019: ``R += (k-1)*jump``, ``jump *= s``)."""

from __future__ import annotations

from torch import nn

Layers = list[tuple[int, int]]


def araujo(layers: Layers) -> tuple[int, int]:
    """(R, jump) of a chain of (kernel, stride) windows."""
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field, jump


def alexnet_features() -> tuple[nn.Module, Layers]:
    """torchvision ``alexnet().features`` (widths / 16)."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(4, 12, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(12, 24, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(24, 16, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(16, 16, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2))
    return model, [(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)]


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"]


def vgg16_features() -> tuple[nn.Module, Layers]:
    """torchvision ``vgg16().features`` (configuration "D", widths / 16)."""
    layers: list[nn.Module] = []
    chain: Layers = []
    channels = 3
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            chain.append((2, 2))
        else:
            width = int(item) // 16
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1),
                       nn.ReLU(inplace=True)]
            chain.append((3, 1))
            channels = width
    return nn.Sequential(*layers), chain


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        nn.init.zeros_(self.bn2.weight)          # zero_init_residual=True
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)

    @staticmethod
    def windows(stride: int) -> Layers:
        return [(3, stride), (3, 1)]


class Bottleneck(nn.Module):
    """torchvision v1.5: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        nn.init.zeros_(self.bn3.weight)          # zero_init_residual=True
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)

    @staticmethod
    def windows(stride: int) -> Layers:
        return [(1, 1), (3, stride), (1, 1)]


class ResNetTrunk(nn.Module):
    """torchvision ``ResNet`` up to ``layer4`` (no pooling head), base width 4."""

    def __init__(self, block, counts: list[int], width: int = 4) -> None:
        super().__init__()
        self.windows: Layers = [(7, 2), (3, 2)]
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, counts[0], 1)
        self.layer2 = self._make_layer(block, width * 2, counts[1], 2)
        self.layer3 = self._make_layer(block, width * 4, counts[2], 2)
        self.layer4 = self._make_layer(block, width * 8, counts[3], 2)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.windows += block.windows(stride)
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
            self.windows += block.windows(1)
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18_trunk() -> tuple[nn.Module, Layers]:
    model = ResNetTrunk(BasicBlock, [2, 2, 2, 2])
    return model, model.windows


def resnet50_trunk() -> tuple[nn.Module, Layers]:
    model = ResNetTrunk(Bottleneck, [3, 4, 6, 3], width=2)
    return model, model.windows


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_conv_bn_relu(cin, hidden, 1, 1)]
        layers += [_conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


MOBILENET_V2 = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
                [6, 160, 3, 2], [6, 320, 1, 1]]


def mobilenet_v2_features() -> tuple[nn.Module, Layers]:
    """torchvision ``mobilenet_v2().features`` (widths / 8, expansion 2)."""
    layers: list[nn.Module] = [_conv_bn_relu(3, 4, 3, 2)]
    chain: Layers = [(3, 2)]
    cin = 4
    for expand, channels, count, stride in MOBILENET_V2:
        cout = max(2, channels // 8)
        for index in range(count):
            step = stride if index == 0 else 1
            layers.append(InvertedResidual(cin, cout, step, min(expand, 2)))
            chain.append((3, step))
            cin = cout
    layers.append(_conv_bn_relu(cin, 16, 1, 1))
    return nn.Sequential(*layers), chain


class Wav2Vec2FeatureEncoder(nn.Module):
    """Hugging Face ``Wav2Vec2FeatureEncoder``: seven strided convs over the raw waveform
    (``conv_kernel = (10, 3, 3, 3, 3, 2, 2)``, ``conv_stride = (5, 2, 2, 2, 2, 2, 2)``);
    ``feat_extract_norm="layer"`` puts a LayerNorm over the channels after each conv,
    ``"group"`` (wav2vec2-base's default) a GroupNorm with one group per channel after the
    first conv only: its statistics span the whole waveform."""

    KERNELS = (10, 3, 3, 3, 3, 2, 2)
    STRIDES = (5, 2, 2, 2, 2, 2, 2)

    def __init__(self, norm: str = "layer", width: int = 8) -> None:
        super().__init__()
        self.norm = norm
        self.convs = nn.ModuleList(
            nn.Conv1d(1 if i == 0 else width, width, k, s, bias=norm == "layer")
            for i, (k, s) in enumerate(zip(self.KERNELS, self.STRIDES)))
        if norm == "layer":
            self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in self.KERNELS)
        else:
            self.norms = nn.ModuleList([nn.GroupNorm(width, width, affine=True)])
        self.activation = nn.GELU()

    def forward(self, input_values):
        hidden = input_values[:, None]
        for index, conv in enumerate(self.convs):
            hidden = conv(hidden)
            if self.norm == "layer":
                hidden = self.norms[index](hidden.transpose(-2, -1)).transpose(-2, -1)
            elif index == 0:
                hidden = self.norms[0](hidden)
            hidden = self.activation(hidden)
        return hidden

    def windows(self) -> Layers:
        return list(zip(self.KERNELS, self.STRIDES))
