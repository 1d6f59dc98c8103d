"""The skeleton encoder of every method: a GCN backbone (CTR-GCN or ST-GCN) with
- a classifier on the globally pooled feature (CE and GAP; GAP's inference, Sec. 3.2),
- for GAP, one linear head per body-part group of the partition (and the global group) into
  the text width (Sec. 3.4, "part pooling" of the last GCN layer),
- for SUGAR, a linear head from the pooled feature into the text width (the MIL-NCE side,
  Eq. 3) and per-step features for the LLM projector (no temporal pooling). It has no
  classifier: it classifies by cosine similarity to each class's mean text embedding
  (``class_text``, saved with the weights), which is how its training is monitored.

Weights are saved as safetensors with the EncoderConfig in the metadata, so a checkpoint
rebuilds its own network, and one made for another architecture is refused with the reason.
Inference (``predict_logits``, ``accuracy``) runs on deterministic centred test-time clips
of the skeleton stream the network was trained on (``modality``), for validation during
training and for evaluation. A config saved without ``modality`` (older files) reads joints.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from actionlm.data.clips import SequenceStore, make_clips
from actionlm.data.skeleton_layouts import LAYOUTS
from actionlm.data.streams import MODALITIES
from actionlm.device import autocast
from actionlm.errors import ActionlmError
from actionlm.io import atomic_path
from actionlm.models.ctrgcn import CTRGCN
from actionlm.models.graph import spatial_adjacency
from actionlm.models.stgcn import STGCN

BACKBONES = {"ctrgcn": CTRGCN, "stgcn": STGCN}
METHODS = ("ce", "gap", "sugar")


@dataclass(frozen=True)
class EncoderConfig:
    method: str  # ce, gap or sugar: which heads exist
    layout: str  # a skeleton layout name (ntu25, kinect_v1_20)
    num_class: int
    backbone: str = "ctrgcn"
    base_channels: int = 64
    bodies: int = 2
    window: int = 64
    modality: str = "joint"  # the skeleton stream it reads (actionlm.data.streams)
    dropout: float = 0.0
    parts: int = 4  # GAP partition: 1 (global only), 2, 4 or 6 groups besides the global term
    text_width: int = 0  # width of the text embeddings (GAP, SUGAR); 0 for CE

    def validate(self) -> EncoderConfig:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} is not one of {METHODS}")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone {self.backbone!r} is not one of {sorted(BACKBONES)}")
        if self.layout not in LAYOUTS:
            problems.append(f"layout {self.layout!r} is not one of {sorted(LAYOUTS)}")
        if self.num_class < 2:
            problems.append(f"num_class {self.num_class} < 2")
        if self.base_channels < 4 or self.bodies < 1:
            problems.append("base_channels must be >= 4 and bodies >= 1")
        if self.window < 4 or self.window % 4:
            problems.append(f"window {self.window} is not a positive multiple of 4 "
                            "(the network halves time twice)")
        if self.modality not in MODALITIES:
            problems.append(f"modality {self.modality!r} is not one of {MODALITIES}")
        if self.method != "ce" and self.text_width < 1:
            problems.append(f"method {self.method} needs the text width (text_width)")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout {self.dropout} not in [0, 1)")
        if problems:
            raise ActionlmError("encoder config: " + "; ".join(problems))
        if self.method == "gap":
            LAYOUTS[self.layout].partition(self.parts)
        return self

    @property
    def part_groups(self) -> dict[str, tuple[int, ...]]:
        """GAP's contrastive terms: the global group, then the partition's parts."""
        layout = LAYOUTS[self.layout]
        groups = layout.partition(1)
        if self.parts != 1:
            groups.update(layout.partition(self.parts))
        return groups


class SkeletonEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg.validate()
        adjacency = spatial_adjacency(LAYOUTS[cfg.layout])
        self.backbone = BACKBONES[cfg.backbone](
            adjacency, cfg.bodies, cfg.base_channels, keep_time=cfg.method == "sugar"
        )
        width = self.backbone.out_channels
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.method != "sugar":
            self.fc = nn.Linear(width, cfg.num_class)
            nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / cfg.num_class))  # CTR-GCN's init
            nn.init.zeros_(self.fc.bias)
        if cfg.method == "gap":
            groups = cfg.part_groups
            self.part_heads = nn.ModuleList(nn.Linear(width, cfg.text_width) for _ in groups)
            masks = torch.zeros(len(groups), adjacency.shape[-1])
            for i, joints in enumerate(groups.values()):
                masks[i, list(joints)] = 1.0 / len(joints)
            self.register_buffer("part_pooling", masks, persistent=False)
        if cfg.method == "sugar":
            self.text_head = nn.Linear(width, cfg.text_width)
            self.register_buffer("class_text", torch.zeros(cfg.num_class, cfg.text_width))

    @property
    def width(self) -> int:
        return self.backbone.out_channels

    def joint_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, V]: last-layer features averaged over time and bodies."""
        return self.backbone.features(x).mean(dim=(1, 3))

    def classify(self, joint_features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(joint_features.mean(dim=-1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores [N, K]: logits (CE, GAP), cosine similarities (SUGAR)."""
        if self.cfg.method == "sugar":
            return self.text_similarity(self.text_embedding(self.step_features(x)))
        return self.classify(self.joint_features(x))

    def text_similarity(self, embedding: torch.Tensor) -> torch.Tensor:
        """SUGAR: cosine similarity of skeleton embeddings [N, D] to each class's text."""
        return F.normalize(embedding.float(), dim=-1) @ F.normalize(self.class_text, dim=-1).T

    def part_embeddings(self, joint_features: torch.Tensor) -> torch.Tensor:
        """GAP: [N, P, text_width], one per contrastive term (global first)."""
        pooled = torch.einsum("ncv,pv->npc", joint_features, self.part_pooling)
        return torch.stack([head(pooled[:, i]) for i, head in enumerate(self.part_heads)], 1)

    def language_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """[N, text_width]: clips in the text encoder's space (zero-shot by text similarity):
        GAP's global head (the first part term), SUGAR's text head (s of Eq. 3)."""
        if self.cfg.method == "sugar":
            return self.text_embedding(self.step_features(x))
        return self.part_embeddings(self.joint_features(x))[:, 0]

    def step_features(self, x: torch.Tensor) -> torch.Tensor:
        """SUGAR: per-step features [N, T / 4, C], averaged over joints and bodies."""
        return self.backbone.features(x).mean(dim=(1, 4)).transpose(1, 2)

    def text_embedding(self, step_features: torch.Tensor) -> torch.Tensor:
        """SUGAR: the skeleton side s of Eq. 3, from the time-averaged step features."""
        return self.text_head(step_features.mean(dim=1))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_encoder(model: SkeletonEncoder, path: str | os.PathLike) -> None:
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(weights, tmp, metadata={"actionlm.encoder": json.dumps(asdict(model.cfg))})


def read_encoder_config(path: str | os.PathLike) -> EncoderConfig:
    try:
        with safe_open(str(path), "pt") as handle:
            raw = (handle.metadata() or {}).get("actionlm.encoder")
    except (OSError, SafetensorError) as err:
        raise ActionlmError(f"{path}: not a readable safetensors file ({err})") from None
    if raw is None:
        raise ActionlmError(f"{path}: no encoder config in its metadata (not an actionlm encoder)")
    return EncoderConfig(**json.loads(raw))


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with a one-line reason when the checkpoint is another architecture."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        details = [f"{name}: {keys[:3]}{'...' if len(keys) > 3 else ''}" for name, keys in
                   (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
                   if keys]
        raise ActionlmError(
            f"{source}: checkpoint is for another architecture ({'; '.join(details)})"
        )
    model.load_state_dict(weights)


def load_encoder(path: str | os.PathLike, device: torch.device | str = "cpu") -> SkeletonEncoder:
    """Rebuild the network a safetensors file was saved from and load its weights."""
    model = SkeletonEncoder(read_encoder_config(path))
    load_weights(model, load_file(str(path)), str(path))
    return model.to(device).eval()


@torch.no_grad()
def predict_logits(model: SkeletonEncoder, store: SequenceStore, window: int,
                   interval: tuple[float, ...], device: torch.device,
                   batch_size: int = 256, precision: str = "auto") -> torch.Tensor:
    """[N, K] float32 class logits of every sample of ``store`` (deterministic centred crops
    of the model's stream: ``store`` must hold it), under actionlm.device's ``precision``."""
    if store.modality != model.cfg.modality:
        raise ActionlmError(f"the encoder reads the {model.cfg.modality} stream; the sequences "
                            f"were loaded for {store.modality}")
    model.eval()
    out = []
    with autocast(device, precision):
        for start in range(0, len(store), batch_size):
            index = torch.arange(start, min(start + batch_size, len(store)))
            out.append(model(make_clips(store, index, window, interval).to(device)).float().cpu())
    return torch.cat(out)
