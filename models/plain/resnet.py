"""A small ResNet for 8x8 digit images (scikit-learn digits): [B, 1, 8, 8] -> logits [B, 10].

Not a published architecture: a ResNet-style stack sized for 8x8 inputs. A 3x3 stem conv
(1 -> 16) with BatchNorm, two basic blocks at 16 channels, one downsampling block to 32 channels
(stride 2, 1x1 projection shortcut), global average pooling and a Linear head. Convolutions have
no bias (BatchNorm follows), as in torchvision's ResNets. Parameters: 24,378 with the defaults.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class SmallResNet(nn.Module):
    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


def build_model(*, width: int = 16, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return SmallResNet(width, num_classes).eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    """4 images of 8x8 pixels with digits' value range [0, 16): [4, 1, 8, 8]."""
    g = torch.Generator().manual_seed(1)
    return (16 * torch.rand(4, 1, 8, 8, generator=g),)
