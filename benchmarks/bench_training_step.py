"""Seconds per training step of the two networks that dominate the default's CPU time, each
against a baseline computed the straightforward way in this process, on the same weights and
batch (the gradients must agree, or the figures are not printed):

- LoRA on SmolLM2-135M (an LLM-AR recognizer, 16 action tokens, a batch of 8): the prompt's
  common head (chat header and instruction, 31 tokens) run once for the batch with its keys and
  values repeated for every row (``Recognizer.forward``), against every row running its whole
  prompt (the baseline: ``prompt_embeddings`` + one model call); then, on a CPU with bf16
  matrix units (AMX), that step under bf16 autocast as ``--precision auto`` runs it there
  (``load_frozen_llm``), against float32 (the losses must agree within 2 %);
- one bf16 linear layer against float32 (why bf16 pays on a CPU with AMX);
- the CTR-GCN encoder of the default (c = 8, 32 frames, 2 bodies, a batch of 32, one thread):
  CTR-GC's phi and psi on the temporal mean of the input (``ChannelTopologyGC``), against phi
  and psi on every frame and then the mean (the baseline, CTR-GCN's code).

    python benchmarks/bench_training_step.py                  # prepares the bundled SmolLM2
    python benchmarks/bench_training_step.py --llm resources/llm/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from actionlm.data.prepare_llm import DEFAULT_SOURCE, prepare_llm
from actionlm.device import autocast, llm_precision
from actionlm.llm.recognizer import (
    IGNORE,
    LoraSettings,
    Recognizer,
    RecognizerSpec,
    base_fingerprint,
)
from actionlm.models import ctrgcn
from actionlm.models.encoder import EncoderConfig, SkeletonEncoder


def seconds_per_step(step, repeats: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Median seconds of ``repeats`` calls after one warm-up, and the gradients of the last."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        grads = step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), grads


def gradients(module: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    module.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def per_row_loss(recognizer: Recognizer, tokens: torch.Tensor, labels: list[int]) -> torch.Tensor:
    """The baseline: every row runs its whole prompt, then its answer (same loss as forward)."""
    prompt, prompt_mask = recognizer.prompt_embeddings(tokens)
    answers = [recognizer.answer_ids(recognizer.spec.classes[c]) for c in labels]
    width = max(map(len, answers))
    targets = torch.full((len(answers), width), IGNORE)
    for i, ids in enumerate(answers):
        targets[i, :len(ids)] = torch.tensor(ids)
    mask = torch.cat([prompt_mask, (targets != IGNORE).long()], dim=1)
    embeds = recognizer.model.get_input_embeddings()(targets.clamp_min(0))
    out = recognizer.model(inputs_embeds=torch.cat([prompt, embeds], dim=1), attention_mask=mask,
                           position_ids=(mask.cumsum(1) - 1).clamp_min(0),
                           logits_to_keep=width + 1)
    return F.cross_entropy(out.logits[:, :-1].float().flatten(0, 1), targets.flatten(),
                           ignore_index=IGNORE, reduction="sum")


def seeded_recognizer(llm: Path, compute_dtype: torch.dtype | None
                      ) -> tuple[Recognizer, torch.Tensor, list[int]]:
    """An LLM-AR recognizer whose adapters have an effect (nonzero LoRA B, so that their
    gradients are compared), the same for every ``compute_dtype``, and a batch of 8."""
    classes = [f"action number {i}" for i in range(19)]
    base = {"llm": str(llm), **base_fingerprint(llm)}
    spec = RecognizerSpec("llm_ar", classes, classes, LoraSettings(dropout=0.0), base, codes=512)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(512, base["hidden_size"], generator=gen) * 0.05
    recognizer = Recognizer(spec, llm, torch.device("cpu"), codebook, compute_dtype).train()
    with torch.no_grad():
        for name, p in recognizer.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=gen)
    tokens = torch.randint(0, 512, (8, 16), generator=gen)
    return recognizer, tokens, torch.randint(0, len(classes), (8,), generator=gen).tolist()


def bench_matmul(repeats: int) -> None:
    """One linear layer of SmolLM2's MLP on 384 rows (576 -> 1536), one thread, float32 against
    bf16 (what oneDNN does with AMX tiles, where the CPU has them)."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(384, 576, generator=gen), torch.randn(1536, 576, generator=gen)
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        seconds, _ = seconds_per_step(partial(F.linear, x.to(dtype), w.to(dtype)), repeats * 20)
        rates[dtype] = 2 * 384 * 576 * 1536 / seconds / 1e9
    print(f"linear 384 x 576 by 576 x 1536 (1 thread): float32 {rates[torch.float32]:,.0f} "
          f"GFLOP/s, bf16 {rates[torch.bfloat16]:,.0f} GFLOP/s: "
          f"{rates[torch.bfloat16] / rates[torch.float32]:.1f}x")


def bench_lora(llm: Path, threads: int, repeats: int) -> None:
    torch.set_num_threads(threads)
    recognizer, tokens, labels = seeded_recognizer(llm, None)
    shared_s, shared = seconds_per_step(
        lambda: gradients(recognizer, recognizer(tokens, labels)[0]), repeats)
    row_s, per_row = seconds_per_step(
        lambda: gradients(recognizer, per_row_loss(recognizer, tokens, labels)), repeats)
    check_same(shared, per_row, "LoRA")
    head = len(recognizer.prompt_pieces(None)[0])
    print(f"LoRA step (SmolLM2-135M, batch 8, {head}-token shared head, {threads} threads): "
          f"per-row prompts {row_s:.3f} s, shared head {shared_s:.3f} s: "
          f"{row_s / shared_s:.2f}x")
    if llm_precision(torch.device("cpu"), "auto") != "bf16":
        print("LoRA step in bf16: not measured, this CPU has no bf16 matrix units (AMX)")
        return
    with torch.no_grad():
        fp32_loss = recognizer(tokens, labels)[0].item()
    recognizer, tokens, labels = seeded_recognizer(llm, torch.bfloat16)

    def bf16_loss():
        with autocast(torch.device("cpu"), "bf16"):
            return recognizer(tokens, labels)[0]

    bf16_s, _ = seconds_per_step(lambda: gradients(recognizer, bf16_loss()), repeats)
    with torch.no_grad():
        loss = bf16_loss().item()
    if abs(loss - fp32_loss) > 0.02 * abs(fp32_loss):
        raise SystemExit(f"LoRA: the bf16 loss {loss:.4f} is not the float32 loss {fp32_loss:.4f}")
    print(f"LoRA step under bf16 autocast (linear weights held in bf16, eager attention; loss "
          f"{loss:.3f} against {fp32_loss:.3f}): float32 {shared_s:.3f} s, bf16 {bf16_s:.3f} s: "
          f"{shared_s / bf16_s:.2f}x")


@contextmanager
def topology_on_every_frame():
    """The baseline CTR-GC: phi and psi over every frame, then their temporal means."""
    def forward(self, x, shared, alpha, time_mean):
        u, v = self.phi(x).mean(dim=2), self.psi(x).mean(dim=2)
        topology = self.refine(torch.tanh(u.unsqueeze(-1) - v.unsqueeze(-2))) * alpha + shared
        return torch.einsum("ncuv,nctv->nctu", topology, self.xi(x))

    own = ctrgcn.ChannelTopologyGC.forward
    ctrgcn.ChannelTopologyGC.forward = forward
    try:
        yield
    finally:
        ctrgcn.ChannelTopologyGC.forward = own


def bench_encoder(repeats: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SkeletonEncoder(EncoderConfig("ce", "ntu25", 19, base_channels=8, window=32))
    x, y = torch.randn(32, 32, 2, 25, 3), torch.randint(0, 19, (32,))
    model.eval()  # batch norm on fixed statistics: both versions see the same network

    def step():
        return gradients(model, F.cross_entropy(model(x), y))

    mean_s, mean_first = seconds_per_step(step, repeats)
    with topology_on_every_frame():
        frames_s, every_frame = seconds_per_step(step, repeats)
    check_same(mean_first, every_frame, "CTR-GCN")
    print(f"CTR-GCN step (c = 8, 32 frames, batch 32, 1 thread): topology from every frame "
          f"{frames_s:.3f} s, from the temporal mean {mean_s:.3f} s: {frames_s / mean_s:.2f}x")


def check_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    """Equal up to float32 reordering: each element within 1e-3 of itself or 1e-5 of its
    tensor's largest magnitude (gradients of 60 differ by 4e-4 when summed in another order)."""
    def close(x: torch.Tensor, y: torch.Tensor) -> bool:
        return torch.allclose(x, y, rtol=1e-3, atol=1e-5 * max(1.0, float(y.abs().max())))

    if set(a) != set(b) or not all(close(a[n], b[n]) for n in a):
        raise SystemExit(f"{what}: the two computations give different gradients")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", type=Path, help="a prepared LLM folder (default: prepare the "
                        "bundled SmolLM2 into a temporary folder)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the LoRA step")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bench_encoder(args.repeats)
    bench_matmul(args.repeats)
    if args.llm:
        bench_lora(args.llm, args.threads, args.repeats)
        return
    with tempfile.TemporaryDirectory() as tmp:
        prepare_llm(DEFAULT_SOURCE, Path(tmp) / "llm")
        bench_lora(Path(tmp) / "llm", args.threads, args.repeats)


if __name__ == "__main__":
    main()
