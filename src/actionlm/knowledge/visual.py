"""Describe the most dissimilar frames of every class with a vision-language model (SUGAR
Step 1, GPT-4V) -> rows of kind ``visual`` in the descriptions.parquet schema.

Frames come from ``--frames-dir DIR/{class_id or class_name}/*.jpg|png`` when the dataset has
RGB, otherwise from stick-figure renders of ``--skeletons``. Per class the ``k`` most mutually
dissimilar frames by open_clip image features are kept (greedy farthest point on cosine
distance) and each is sent, as a base64 PNG, with SUGAR's three rules. Answers go through the
cached LLM client: a rerun sends no request.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from actionlm.cli_args import Bounded, fields_from_args, non_negative_int, positive_int
from actionlm.data.classes import read_class_rows
from actionlm.errors import ActionlmError
from actionlm.io import write_parquet
from actionlm.knowledge.client import (
    ChatRequest,
    LLMClient,
    add_client_arguments,
    client_from_args,
)
from actionlm.knowledge.describe import descriptions_table
from actionlm.text import DEFAULT_CLIP_PRETRAINED, RANDOM_INIT

log = logging.getLogger(__name__)

# SUGAR Step 1, "Generate Action-related Visual Knowledge", quoted.
VISUAL_RULES = (
    "Provides a description of the given image that correctly matches the action",
    "Only describe the scene related to the given action",
    "Do not provide any text or explanations unrelated to the action",
)


def visual_prompt(class_name: str, rendered: bool) -> str:
    image = ("a stick figure drawn from the 3-D skeleton of a person" if rendered
             else "a video frame of a person")
    rules = "\n".join(f"- {rule}." for rule in VISUAL_RULES)
    return (f'The image is {image} performing the action "{class_name}". '
            f"Describe it under these rules:\n{rules}")


def visual_request(class_name: str, png: bytes, rendered: bool, origin: str,
                   max_tokens: int, temperature: float, seed: int) -> ChatRequest:
    """One frame per request, as SUGAR generates "for each frame from the collected image
    set"; the image travels inline (base64 PNG), so any OpenAI-compatible VLM can read it."""
    url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    content = [{"type": "text", "text": visual_prompt(class_name, rendered)},
               {"type": "image_url", "image_url": {"url": url}}]
    return ChatRequest(messages=({"role": "user", "content": content},), max_tokens=max_tokens,
                       temperature=temperature, seed=seed,
                       label=f"class {class_name!r} ({origin})")


@dataclass(frozen=True)
class FrameOptions:
    """Where candidate frames come from and how many of them the VLM sees."""

    frames_dir: Path | None = None
    skeletons: Path | None = None
    frames_per_class: int = 4  # k, the frames described per class
    samples_per_class: int = 4  # renders: sequences drawn per class ...
    frames_per_sample: int = 8  # ... and frames drawn per sequence
    render_size: int = 224
    max_side: int = 512
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("frames_per_class", "samples_per_class", "frames_per_sample",
                     "render_size", "max_side"):
            if getattr(self, name) < 1:
                raise ActionlmError(f"--{name.replace('_', '-')} must be >= 1")


def select_frames(classes: list[tuple], options: FrameOptions) -> dict[int, list]:
    """The k most mutually dissimilar candidate frames of every (label, class_name, ...)."""
    from actionlm.device import select_device
    from actionlm.knowledge import frames
    from actionlm.text.encoders import load_open_clip

    if (options.frames_dir is None) == (options.skeletons is None):
        raise ActionlmError("describe-visual: give exactly one of --frames-dir and --skeletons")
    if options.frames_dir is not None:
        folders = {label: frames.class_folder(options.frames_dir, label, name)
                   for label, name, *_ in classes}
        missing = [name for label, name, *_ in classes if folders[label] is None]
        if missing:
            raise ActionlmError(
                f"{options.frames_dir}: no folder for class(es) {', '.join(missing[:5])} "
                "(expected DIR/{class_id}/ or DIR/{class_name}/ holding .jpg/.png frames)")
    else:
        rendered = frames.skeleton_frames(
            options.skeletons, [label for label, *_ in classes], options.samples_per_class,
            options.frames_per_sample, options.render_size, options.seed)

    def candidates(label: int) -> list[frames.Frame]:
        if options.frames_dir is not None:  # read one class at a time: folders can be large
            return frames.folder_frames(folders[label], options.max_side)
        return rendered[label]

    device = select_device(options.device)
    clip, preprocess, _ = load_open_clip(options.clip_model, options.clip_pretrained, device,
                                         options.seed)
    selected = {}
    for label, name, *_ in tqdm(classes, desc="select frames", unit="class"):
        pool = candidates(label)
        if not pool:
            raise ActionlmError(f"class {name!r}: no image found to describe")
        features = frames.clip_image_features(pool, clip, preprocess, device)
        selected[label] = [pool[i] for i in
                           frames.farthest_point_selection(features, options.frames_per_class)]
        log.debug("class %r: %d of %d frames kept", name, len(selected[label]), len(pool))
    return selected


def describe_visual(
    classes_path: str | os.PathLike, out: str | os.PathLike, client: LLMClient,
    options: FrameOptions, *, max_tokens: int = 200, temperature: float = 0.7,
    save_frames: str | os.PathLike | None = None,
) -> pa.Table:
    classes = read_class_rows(classes_path)
    selected = select_frames(classes, options)
    rendered = options.frames_dir is None
    jobs = [(label, name, frame) for label, name, *_ in classes for frame in selected[label]]
    requests = [visual_request(name, frame.png, rendered, frame.origin, max_tokens, temperature,
                               options.seed) for _, name, frame in jobs]
    answers = client.run(requests, progress="describe-visual")
    weights = options.clip_pretrained
    if weights.lower() == RANDOM_INIT:
        weights = "RANDOM INIT"
    rows = [{"class_id": label, "class_name": name, "kind": "visual", "part": None,
             "text": answer.text, "source": client.provider.source,
             "request_hash": answer.request_hash}
            for (label, name, _), answer in zip(jobs, answers)]
    table = descriptions_table(
        rows, frames=[frame.origin for _, _, frame in jobs],
        frame_source=f"{'stick figures of' if rendered else 'images in'} "
                     f"{options.skeletons or options.frames_dir}",
        frame_selector=f"open_clip:{options.clip_model}/{weights}",
        source=client.provider.source, calls=client.stats.as_dict())
    write_parquet(table, out)
    if save_frames is not None:
        for label in selected:
            folder = Path(save_frames) / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(selected[label]):
                (folder / f"{i:02d}.png").write_bytes(frame.png)
    log.info("wrote %s: %d visual descriptions of %d classes", out, len(jobs), len(classes))
    return table


PIXELS = Bounded(int, 32)  # a frame side worth describing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", required=True, type=Path,
                        help="the dataset's classes.parquet (label, class_name); label is the "
                        "class_id of the output rows")
    frames_from = parser.add_mutually_exclusive_group(required=True)
    frames_from.add_argument("--frames-dir", type=Path,
                             help="RGB frames: DIR/{class_id or class_name}/*.jpg|png")
    frames_from.add_argument("--skeletons", type=Path,
                             help="skeletons.parquet, rendered as stick figures (no RGB)")
    parser.add_argument("--out", required=True, type=Path, help="visual.parquet to write")
    defaults = FrameOptions()
    parser.add_argument("--frames-per-class", type=positive_int, default=defaults.frames_per_class,
                        help="k: most dissimilar frames described per class")
    parser.add_argument("--samples-per-class", type=positive_int,
                        default=defaults.samples_per_class,
                        help="renders: sequences drawn per class")
    parser.add_argument("--frames-per-sample", type=positive_int,
                        default=defaults.frames_per_sample,
                        help="renders: frames per sequence, evenly spaced")
    parser.add_argument("--render-size", type=PIXELS, default=defaults.render_size,
                        help="render side in pixels")
    parser.add_argument("--max-side", type=PIXELS, default=defaults.max_side,
                        help="RGB frames are downscaled to this longer side before sending")
    parser.add_argument("--clip-model", default=defaults.clip_model,
                        help="open_clip image tower")
    parser.add_argument("--clip-pretrained", default=defaults.clip_pretrained,
                        help="open_clip weights tag or file; 'none' = random (tests only)")
    parser.add_argument("--device", default=defaults.device, help="for CLIP: auto, cpu, cuda:N")
    parser.add_argument("--seed", type=non_negative_int, default=defaults.seed)
    parser.add_argument("--save-frames", type=Path,
                        help="also write the chosen frames to DIR/{class_id}/NN.png")
    add_client_arguments(parser, default_model="gpt-4o")
    parser.add_argument("--max-tokens", type=positive_int, default=200)
    parser.add_argument("--temperature", type=Bounded(float, 0, 2), default=0.7)


def run(args: argparse.Namespace) -> None:
    options = FrameOptions(**fields_from_args(FrameOptions, args))
    describe_visual(args.classes, args.out, client_from_args(args), options,
                    max_tokens=args.max_tokens, temperature=args.temperature,
                    save_frames=args.save_frames)
