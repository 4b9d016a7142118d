"""The TalkNet-ASD network (Tao et al., ACM MM 2021), laid out to load the official weights key for key.

Module names follow the official ``pretrain_TalkSet.model`` state dict:

  visual  112x112 grey crops, (x / 255 - 0.4161) / 0.1688
          -> Conv3d 5x7x7 + BN + ReLU + MaxPool (the only layer that mixes frames, +-2)
          -> ResNet-18 trunk (64..512) -> 512 / frame
          -> V-TCN: 5 residual depthwise-separable temporal convs -> Conv1d 512 -> 128
  audio   13-dim MFCC at 100 Hz (``mfcc.talknet_mfcc``) -> SE-ResNet 2-D encoder
          (channels 16..128, time stride 4) -> 128 / video frame
  fusion  cross-attention both ways (audio queried by video, video queried by audio),
          concatenation (256), self-attention, linear -> 2 logits; the score is logit[1]
          exactly as the official demo reports it (``lossAV.forward(out, labels=None)``).

The heads ``lossA``/``lossV`` are training-only auxiliaries; they exist here only so the checkpoint
loads strictly. Loading the weights, the demo's face crops and its chunked scoring are
``ehead_cli.prepare.talknet``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PIXEL_MEAN = 0.4161  # the original input normalisation of grey values in [0, 1]
PIXEL_STD = 0.1688
D_AUDIO = 128  # per-modality embedding width
D_VISUAL_FRAME = 512
N_HEADS = 8


# --- visual front end ---------------------------------------------------------------------
class ResNetLayer(nn.Module):
    """Two basic blocks of the lip-reading ResNet-18 (deep_avsr style).

    Block a: relu(bn(conv)) -> conv, plus the input (or its 1x1 strided projection), then
    relu(bn). Block b: the same with an identity shortcut. ``downsample`` exists even where the
    stride is 1 (the checkpoint holds it) but is used only when striding.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        bn = dict(momentum=0.01, eps=0.001)
        self.stride = stride
        self.conv1a = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1a = nn.BatchNorm2d(c_out, **bn)
        self.conv2a = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.downsample = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        self.outbna = nn.BatchNorm2d(c_out, **bn)
        self.conv1b = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn1b = nn.BatchNorm2d(c_out, **bn)
        self.conv2b = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.outbnb = nn.BatchNorm2d(c_out, **bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.stride == 1 else self.downsample(x)
        mid = self.conv2a(F.relu(self.bn1a(self.conv1a(x)))) + shortcut
        y = F.relu(self.outbna(mid))
        y = self.conv2b(F.relu(self.bn1b(self.conv1b(y)))) + mid
        return F.relu(self.outbnb(y))


class ResNet(nn.Module):
    """(N, 64, 28, 28) -> (N, 512, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.layer1 = ResNetLayer(64, 64, 1)
        self.layer2 = ResNetLayer(64, 128, 2)
        self.layer3 = ResNetLayer(128, 256, 2)
        self.layer4 = ResNetLayer(256, 512, 2)
        self.avgpool = nn.AvgPool2d(4, 1)  # 4x4 map left from a 112 input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.layer4(self.layer3(self.layer2(self.layer1(x)))))


class VisualFrontend(nn.Module):
    """Normalised grey clips (B, 1, T, 112, 112) -> (B, T, 512)."""

    def __init__(self):
        super().__init__()
        self.frontend3D = nn.Sequential(
            nn.Conv3d(1, 64, (5, 7, 7), (1, 2, 2), (2, 3, 3), bias=False),
            nn.BatchNorm3d(64, momentum=0.01, eps=0.001),
            nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        self.resnet = ResNet()

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        B, _, T = clips.shape[:3]
        y = self.frontend3D(clips)  # (B, 64, T, 28, 28)
        y = y.transpose(1, 2).reshape(B * T, y.shape[1], y.shape[3], y.shape[4])  # frames as a batch
        return self.resnet(y).reshape(B, T, D_VISUAL_FRAME)


class GlobalLayerNorm(nn.Module):
    """Normalise (B, C, T) over channels and time together, per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        return self.gamma * (x - mean) / torch.sqrt(var + self.eps) + self.beta


class DSConv1d(nn.Module):
    """Residual depthwise-separable temporal conv (pre-activation), (B, 512, T) -> same."""

    def __init__(self, channels: int = D_VISUAL_FRAME):
        super().__init__()
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.BatchNorm1d(channels),
            nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.PReLU(),
            GlobalLayerNorm(channels),
            nn.Conv1d(channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class VisualTCN(nn.Module):
    N_BLOCKS = 5

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(*[DSConv1d() for _ in range(self.N_BLOCKS)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VisualConv1D(nn.Module):
    """(B, 512, T) -> (B, 128, T)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(D_VISUAL_FRAME, 256, 5, padding=2),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Conv1d(256, D_AUDIO, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --- audio front end ----------------------------------------------------------------------
class SELayer(nn.Module):
    """Squeeze-and-excitation: channel gates from the global average, reduction 8."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class SEBasicBlock(nn.Module):
    """Residual block; note the original order conv -> ReLU -> BN in the first branch."""

    def __init__(self, c_in: int, c_out: int, stride: int | tuple[int, int] = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.se = SELayer(c_out)
        needs_projection = stride not in (1, (1, 1)) or c_in != c_out
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if needs_projection else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(F.relu(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


class AudioEncoder(nn.Module):
    """MFCC (B, 1, 13, 4T) -> (B, T, 128): stride 2 in frequency at the stem, 2x2 twice after."""

    LAYERS = (3, 4, 6, 3)
    CHANNELS = (16, 32, 64, 128)
    STRIDES = (1, (2, 2), (2, 2), (1, 1))

    def __init__(self):
        super().__init__()
        c0 = self.CHANNELS[0]
        self.conv1 = nn.Conv2d(1, c0, 7, (2, 1), 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        c_in = c0
        for i, (n, c, s) in enumerate(zip(self.LAYERS, self.CHANNELS, self.STRIDES, strict=True), start=1):
            blocks = [SEBasicBlock(c_in, c, s)] + [SEBasicBlock(c, c) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 128, 2, T)
        return x.mean(dim=2).transpose(1, 2)


# --- fusion -------------------------------------------------------------------------------
class AttentionLayer(nn.Module):
    """Post-norm transformer layer where ``tar`` queries ``src``; the residual is ``src``.

    Used as cross-attention (src and tar from different modalities, same length) and as
    self-attention (src is tar). Dropout is inactive at inference.
    """

    def __init__(self, d_model: int, n_heads: int = N_HEADS, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, 4 * d_model)
        self.linear2 = nn.Linear(4 * d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, tar: torch.Tensor) -> torch.Tensor:
        """(B, T, C), (B, T, C) -> (B, T, C)."""
        attended, _ = self.self_attn(tar, src, src, need_weights=False)
        x = self.norm1(src + self.dropout(attended))
        x = self.norm2(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return x


class TalkNetModel(nn.Module):
    """The network proper; ``TalkNet`` adds the score heads."""

    def __init__(self):
        super().__init__()
        self.visualFrontend = VisualFrontend()
        self.visualTCN = VisualTCN()
        self.visualConv1D = VisualConv1D()
        self.audioEncoder = AudioEncoder()
        self.crossA2V = AttentionLayer(D_AUDIO)
        self.crossV2A = AttentionLayer(D_AUDIO)
        self.selfAV = AttentionLayer(2 * D_AUDIO)

    def visual_temporal(self, frame_features: torch.Tensor) -> torch.Tensor:
        """(B, T, 512) per-frame features -> (B, T, 128)."""
        x = self.visualConv1D(self.visualTCN(frame_features.transpose(1, 2)))
        return x.transpose(1, 2)

    def audio_embed(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 13) MFCC -> (B, T, 128)."""
        return self.audioEncoder(mfcc.transpose(1, 2)[:, None])

    def fuse(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """(B, T, 128) each -> (B, T, 256) audio-visual embedding."""
        a = self.crossA2V(src=audio, tar=visual)
        v = self.crossV2A(src=visual, tar=audio)
        av = torch.cat([a, v], dim=2)
        return self.selfAV(src=av, tar=av)


class ScoreHead(nn.Module):
    """Linear -> 2 logits (not speaking, speaking)."""

    def __init__(self, d_in: int):
        super().__init__()
        self.FC = nn.Linear(d_in, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.FC(x)


class TalkNet(nn.Module):
    """Network plus heads, laid out like the official checkpoint (``model.*``, ``lossAV.*``, ...)."""

    def __init__(self):
        super().__init__()
        self.model = TalkNetModel()
        self.lossAV = ScoreHead(2 * D_AUDIO)
        self.lossA = ScoreHead(D_AUDIO)  # training-only auxiliary heads
        self.lossV = ScoreHead(D_AUDIO)

    def score(self, frame_features: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, T, 512) visual frame features, (B, 4T, 13) MFCC -> (B, T) speaking scores."""
        visual = self.model.visual_temporal(frame_features)
        audio = self.model.audio_embed(mfcc)
        return self.lossAV(self.model.fuse(audio, visual))[..., 1]

    def forward(self, faces: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, T, 112, 112) grey faces in [0, 255], (B, 4T, 13) MFCC -> (B, T) scores (one chunk)."""
        return self.score(self.model.visualFrontend(normalise_faces(faces)[:, None]), mfcc)


def normalise_faces(faces: torch.Tensor) -> torch.Tensor:
    """Grey values in [0, 255] -> the original input normalisation."""
    return (faces.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
