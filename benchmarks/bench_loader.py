"""Throughput of the encoders' training-clip loader against CTR-GCN's per-sample Feeder.

The baseline, run in this same process on the same samples, does what CTR-GCN's
``feeders/feeder_ntu.py`` does: the dataset is held as one zero-padded [N, 3, 300, V, M] array;
``__getitem__`` counts the valid frames, crops a random share p ~ U[0.5, 1] (at least 64
frames), resizes it with ``F.interpolate(bilinear)`` and rotates it at random, one sample at a
time, and a ``torch.utils.data.DataLoader`` collates the batches. actionlm's loader
(``actionlm.data.clips.make_clips``) makes the same clips for a whole batch with one gather
and one blend. Test-mode clips (centred 0.95 crop) of both are checked to be equal.

Then the skeleton streams (actionlm.data.streams): clips/s of make_clips on the same batches
for each modality (joint, bone, joint_motion, bone_motion; the sequences loaded once per
stream, its bones taken at load), best of --stream-rounds rounds that take the modalities in
turn, and each one's ratio to the joint stream (target: bone and motion streams within 10 %
of joint).

    python benchmarks/bench_loader.py                        # synthetic default data
    python benchmarks/bench_loader.py --data results/data/nw_ucla --protocol view2 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from actionlm.data.clips import SequenceStore, load_sequences, make_clips
from actionlm.data.prepare import prepare
from actionlm.data.split_files import SplitFiles
from actionlm.data.streams import MODALITIES

MAX_FRAMES = 300


def padded_array(store: SequenceStore) -> np.ndarray:
    """CTR-GCN's input layout: [N, C, 300, V, M], zero after each sample's last frame."""
    m, v = store.frames.shape[1:3]
    data = np.zeros((len(store), 3, MAX_FRAMES, v, m), np.float32)
    for i in range(len(store)):
        n = min(int(store.lengths[i]), MAX_FRAMES)
        frames = store.frames[store.starts[i]: store.starts[i] + n].numpy()
        data[i, :, :n] = frames.transpose(3, 0, 2, 1)
    return data


class PerSampleFeeder(Dataset):
    """The baseline: CTR-GCN's Feeder, one sample per call."""

    def __init__(self, data: np.ndarray, labels: np.ndarray, window: int,
                 interval: tuple[float, ...], rotate: float):
        self.data, self.labels = data, labels
        self.window, self.interval, self.rotate = window, interval, rotate

    def __len__(self) -> int:
        return len(self.labels)

    def crop_resize(self, sample: np.ndarray, valid: int) -> np.ndarray:
        """CTR-GCN's tools.valid_crop_resize: numpy crop, torch interpolate, back to numpy."""
        c, _, v, m = sample.shape
        if len(self.interval) == 1:
            bias = int((1 - self.interval[0]) * valid / 2)
            sample = sample[:, bias: valid - bias]
        else:
            p = np.random.rand() * (self.interval[1] - self.interval[0]) + self.interval[0]
            crop = min(max(int(np.floor(valid * p)), min(self.window, valid)), valid)
            bias = np.random.randint(0, valid - crop + 1)
            sample = sample[:, bias: bias + crop]
        length = sample.shape[1]
        data = torch.tensor(sample, dtype=torch.float)
        data = data.permute(0, 2, 3, 1).contiguous().view(c * v * m, length)[None, None]
        data = F.interpolate(data, size=(c * v * m, self.window), mode="bilinear",
                             align_corners=False).squeeze()
        return data.contiguous().view(c, v, m, self.window).permute(0, 3, 1, 2).contiguous().numpy()

    def rotate_sample(self, sample: np.ndarray) -> np.ndarray:
        """CTR-GCN's tools.random_rot: one rotation, applied frame by frame as a batch of
        [3, 3] x [3, V * M] products."""
        data = torch.from_numpy(sample)
        c, t, v, m = data.shape
        data = data.permute(1, 0, 2, 3).contiguous().view(t, c, v * m)
        ax, ay, az = ((torch.rand(3) * 2 - 1) * self.rotate).tolist()
        rx = torch.tensor([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = torch.tensor([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        rz = torch.tensor([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
        rotation = (rz @ ry @ rx).float()[None].repeat(t, 1, 1)
        data = torch.matmul(rotation, data)
        return data.view(t, c, v, m).permute(1, 0, 2, 3).contiguous().numpy()

    def __getitem__(self, index: int):
        sample = np.array(self.data[index])
        valid = int(np.sum(sample.sum(0).sum(-1).sum(-1) != 0))
        clip = self.crop_resize(sample, valid)
        if self.rotate > 0:
            clip = self.rotate_sample(clip)
        return clip, self.labels[index]


def stream_rates(files: SplitFiles, args: argparse.Namespace) -> dict[str, float]:
    """Training clips/s of make_clips per modality on the same batches (best of the rounds)."""
    stores = {m: load_sequences(files, ("train",), modality=m) for m in MODALITIES}
    store, batches = stores["joint"], []
    for epoch in range(args.epochs):
        order = torch.randperm(len(store), generator=torch.Generator().manual_seed(epoch))
        batches += [order[b * args.batch_size: (b + 1) * args.batch_size]
                    for b in range(len(store) // args.batch_size)]
    best = dict.fromkeys(MODALITIES, 0.0)
    for _ in range(args.stream_rounds):
        for modality in MODALITIES:
            started = time.perf_counter()
            for b, index in enumerate(batches):
                make_clips(stores[modality], index, args.window, (0.5, 1.0), args.rotate,
                           torch.Generator().manual_seed(b))
            rate = len(batches) * args.batch_size / (time.perf_counter() - started)
            best[modality] = max(best[modality], rate)
    return best


def dataset(args: argparse.Namespace, scratch: Path) -> tuple[Path, str]:
    if args.data:
        return args.data, args.protocol
    out = scratch / "synthetic"
    prepare("synthetic", None, out, dataset=None, protocols=["xsub"], workers=2)
    return out, "xsub"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="prepared dataset folder")
    parser.add_argument("--protocol", default="xsub")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rotate", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="baseline DataLoader workers")
    parser.add_argument("--stream-rounds", type=int, default=3,
                        help="rounds over the modalities (each one's best rate is kept)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        data, protocol = dataset(args, Path(scratch))
        files = SplitFiles.prepared(data, protocol)
        store = load_sequences(files, ("train",))
        rates = stream_rates(files, args)
    padded = padded_array(store)
    feeder = PerSampleFeeder(padded, store.labels.numpy(), args.window, (0.95,), 0.0)
    reference = torch.from_numpy(np.stack([feeder[i][0] for i in range(len(store))]))
    reference = reference.permute(0, 2, 4, 3, 1)
    ours = make_clips(store, torch.arange(len(store)), args.window, (0.95,))
    assert torch.allclose(reference, ours, atol=1e-5), "test clips differ from the baseline's"

    feeder = PerSampleFeeder(padded, store.labels.numpy(), args.window, (0.5, 1.0), args.rotate)
    loader = DataLoader(feeder, batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, drop_last=True)
    started = time.perf_counter()
    seen = 0
    for _ in range(args.epochs):
        for clips, _labels in loader:
            seen += len(clips)
    base_rate = seen / (time.perf_counter() - started)

    started = time.perf_counter()
    seen = 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(store), generator=torch.Generator().manual_seed(epoch))
        for b in range(len(store) // args.batch_size):
            index = order[b * args.batch_size: (b + 1) * args.batch_size]
            clips = make_clips(store, index, args.window, (0.5, 1.0), args.rotate,
                               torch.Generator().manual_seed(b))
            labels = store.labels[index]
            seen += len(labels)
    our_rate = seen / (time.perf_counter() - started)

    print(f"samples: {len(store)} train clips of {args.window} frames, batch {args.batch_size}, "
          f"rotation {args.rotate}, {args.epochs} epochs")
    print(f"CTR-GCN per-sample Feeder + DataLoader ({args.workers} workers): "
          f"{base_rate:,.0f} samples/s")
    print(f"actionlm batched clips (1 thread):          {our_rate:,.0f} samples/s")
    print(f"speed-up: {our_rate / base_rate:.1f}x  (target >= 5x)")

    print(f"skeleton streams, make_clips on the same batches (best of {args.stream_rounds}):")
    for modality, rate in rates.items():
        print(f"  {modality:<12} {rate:>9,.0f} clips/s  {rate / rates['joint']:.2f} x joint")


if __name__ == "__main__":
    main()
