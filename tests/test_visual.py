"""describe-visual: skeleton layouts, stick-figure renders, farthest-point frame choice, and the
whole stage against a real loopback OpenAI-compatible server (requests checked, rerun free)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from actionlm.cli import main
from actionlm.data.classes import ClassTable
from actionlm.data.skeleton_layouts import KINECT_V1_20, LAYOUTS, NTU25, layout_for_joints
from actionlm.data.table import Sample, SkeletonTableWriter, write_classes
from actionlm.errors import ActionlmError
from actionlm.io import table_metadata
from actionlm.knowledge.describe import DESCRIPTIONS_SCHEMA
from actionlm.knowledge.frames import farthest_point_selection, render_stick_figures
from actionlm.knowledge.visual import VISUAL_RULES, FrameOptions, select_frames
from fake_openai import FakeOpenAI, last_user_text

CLASSES = ClassTable("test", (23, 24), ("hand waving", "kicking something"))


def test_layouts_are_trees_over_their_joints():
    for layout in LAYOUTS.values():
        assert len(layout.bones) == layout.n_joints - 1
        reached, frontier = {0}, [0]
        while frontier:
            joint = frontier.pop()
            for child, parent in layout.bones:
                for a, b in ((child, parent), (parent, child)):
                    if a == joint and b not in reached:
                        reached.add(b)
                        frontier.append(b)
        assert reached == set(range(layout.n_joints)), layout.name
    assert layout_for_joints(25) is NTU25 and layout_for_joints(20) is KINECT_V1_20
    assert NTU25.joint_names[20] == "spine at the shoulders" and (23, 24) in NTU25.bones
    with pytest.raises(ActionlmError, match="no skeleton layout with 17 joints"):
        layout_for_joints(17)


def test_farthest_point_selection_known_answer():
    e1, e2, e3 = np.eye(3)
    near_e1 = (e1 + 0.1 * e2) / np.linalg.norm(e1 + 0.1 * e2)
    features = np.stack([e1, e1, near_e1, e2, e3])
    # e3 is least similar to the rest; then e1 (index 0, first of a tie) at distance 1; then e2
    assert farthest_point_selection(features, 3) == [0, 3, 4]
    assert farthest_point_selection(features, 4) == [0, 2, 3, 4]
    assert farthest_point_selection(features, 5) == [0, 2, 3, 4]  # the duplicate of e1 is dropped
    assert farthest_point_selection(features, 0) == []


def pose_sequence(n_frames: int, seed: int, bodies: int = 1) -> np.ndarray:
    """An NTU-layout sequence: a random pose whose hands swing over time."""
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=0.3, size=(bodies, 25, 3)).astype(np.float32)
    swing = np.sin(np.linspace(0, np.pi, n_frames))[:, None, None, None]
    joints = np.repeat(base[None], n_frames, axis=0)
    joints[:, :, [7, 11, 21, 23], 1] += 0.8 * swing[:, :, 0]
    return joints


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_stick_figures_draw_moving_bones_and_skip_padding():
    joints = pose_sequence(10, seed=1)
    first, last = (decode(p) for p in render_stick_figures(joints, NTU25, [0, 5], 160))
    assert first.shape == (160, 160, 3)
    assert (first < 128).any(axis=2).sum() > 200  # bones are drawn
    assert (first != last).any()  # the hands moved
    padded = np.concatenate([joints, np.zeros_like(joints)], axis=1)  # empty second body
    np.testing.assert_array_equal(decode(render_stick_figures(padded, NTU25, [0], 160)[0]), first)


def write_dataset(folder):
    with SkeletonTableWriter(folder / "skeletons.parquet", CLASSES) as writer:
        for i, native in enumerate((23, 23, 24, 24)):
            writer.add(Sample(f"S001C001P00{i + 1}R001A0{native}", native,
                              pose_sequence(30, seed=i), "test"))
    write_classes(CLASSES, folder / "classes.parquet")
    return folder


def sent_images(body: dict) -> list[bytes]:
    parts = body["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert all(u.startswith("data:image/png;base64,") for u in urls)
    return [base64.b64decode(u.split(",", 1)[1]) for u in urls]


def answer(body: dict) -> str:
    name = last_user_text(body).split('"')[1]
    return f"{name}: the right arm rises"


def describe(tmp_path, server, *source: str, k: int = 3, out: str = "visual.parquet") -> int:
    return main([
        "describe-visual", "--classes", str(tmp_path / "classes.parquet"), *source,
        "--out", str(tmp_path / out), "--frames-per-class", str(k),
        "--samples-per-class", "2", "--frames-per-sample", "4", "--clip-model", "ViT-S-32",
        "--clip-pretrained", "none",
        "--device", "cpu", "--model", "fake-model", "--base-url", server.base_url,
        "--cache-dir", str(tmp_path / "cache"),
    ])


def test_describe_visual_from_skeleton_renders_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    write_dataset(tmp_path)
    with FakeOpenAI(answer) as server:
        assert describe(tmp_path, server, "--skeletons", str(tmp_path / "skeletons.parquet")) == 0
        first = pq.read_table(tmp_path / "visual.parquet")
        n_sent = len(server.requests)
        assert describe(tmp_path, server, "--skeletons", str(tmp_path / "skeletons.parquet"),
                        out="again.parquet") == 0
        assert len(server.requests) == n_sent  # the rerun is answered from the cache
    assert n_sent == 6  # 3 frames for each of the 2 classes
    for body in server.requests:
        assert body["model"] == "fake-model"
        prompt = last_user_text(body)
        assert all(rule in prompt for rule in VISUAL_RULES) and "stick figure" in prompt
        (png,) = sent_images(body)
        assert decode(png).shape == (224, 224, 3)
    prompts = [last_user_text(b) for b in server.requests]
    assert sum('"hand waving"' in p for p in prompts) == 3
    assert sum('"kicking something"' in p for p in prompts) == 3
    assert first.schema.remove_metadata() == DESCRIPTIONS_SCHEMA
    rows = first.to_pandas()
    assert set(rows["kind"]) == {"visual"} and rows["part"].isna().all()
    assert list(rows["class_id"]) == [0, 0, 0, 1, 1, 1]
    assert list(rows["text"]) == [f"{n}: the right arm rises" for n in rows["class_name"]]
    assert rows["request_hash"].is_unique and (rows["source"].str.endswith("/fake-model")).all()
    assert len(set(table_metadata(first, "frames"))) == 6
    assert "RANDOM INIT" in table_metadata(first, "frame_selector")
    assert pq.read_table(tmp_path / "again.parquet").to_pandas()["text"].tolist() == rows["text"].tolist()
    assert b"sk-test-secret" not in (tmp_path / "visual.parquet").read_bytes()


def save(image: np.ndarray, path) -> np.ndarray:
    Image.fromarray(image).save(path)
    return image


def test_frames_dir_keeps_each_distinct_image_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    write_classes(CLASSES, tmp_path / "classes.parquet")
    rng = np.random.default_rng(0)
    red = np.zeros((40, 60, 3), np.uint8)
    red[..., 0] = 220
    stripes = np.zeros((40, 60, 3), np.uint8)
    stripes[::4] = 255
    noise = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    by_id, by_name = tmp_path / "frames" / "0", tmp_path / "frames" / "kicking something"
    by_id.mkdir(parents=True)
    by_name.mkdir(parents=True)
    for i in range(3):  # a long static stretch: three identical frames
        save(red, by_id / f"a{i}.png")
    save(stripes, by_id / "b0.png")
    save(stripes, by_id / "b1.png")
    save(noise, by_id / "c.png")
    save(noise, by_name / "x.png")
    save(red, by_name / "y.png")
    with FakeOpenAI(answer) as server:
        assert describe(tmp_path, server, "--frames-dir", str(tmp_path / "frames"), k=5) == 0
    sent = {}
    for body in server.requests:
        (png,) = sent_images(body)
        sent.setdefault(last_user_text(body).split('"')[1], []).append(decode(png))
        assert "video frame" in last_user_text(body)
    assert sorted(len(v) for v in sent.values()) == [2, 3]  # duplicates were not sent

    def same(images, expected):
        return sorted(any(np.array_equal(i, e) for i in images) for e in expected)

    assert same(sent["hand waving"], [red, stripes, noise]) == [True] * 3
    assert same(sent["kicking something"], [noise, red]) == [True] * 2


def test_frames_dir_must_cover_every_class(tmp_path):
    (tmp_path / "0").mkdir()
    options = FrameOptions(frames_dir=tmp_path, clip_pretrained="none", device="cpu")
    with pytest.raises(ActionlmError, match=r"no folder for class\(es\) kicking something"):
        select_frames([(0, "hand waving"), (1, "kicking something")], options)
    with pytest.raises(ActionlmError, match="exactly one of --frames-dir and --skeletons"):
        select_frames([(0, "hand waving")], FrameOptions())
    with pytest.raises(ActionlmError, match="--frames-per-class must be >= 1"):
        FrameOptions(frames_dir=tmp_path, frames_per_class=0)
