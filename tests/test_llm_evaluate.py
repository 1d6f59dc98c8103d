"""Evaluation of LLM recognizers (closed set, zero-shot), the text-probe baseline and the
seed average: outputs agree with direct scoring, zero-shot ranks the held-out classes listed
in the prompt, the text probe names classes it never trained on, bad input is refused."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from actionlm.data.features import write_features
from actionlm.errors import ActionlmError
from actionlm.eval.llm import add_llm_arguments, evaluate_llm
from actionlm.eval.zero_shot import gzsl_accuracy
from actionlm.io import table_metadata, with_metadata, write_parquet
from actionlm.llm.recognizer import (
    LoraSettings,
    Recognizer,
    RecognizerSpec,
    base_fingerprint,
    load_recognizer,
)
from actionlm.llm.scoring import (
    generate_answers,
    match_answer,
    match_ranking,
    score_answers,
    tokenize_answers,
)
from actionlm.llm.tqp import BridgeConfig
from actionlm.llm.zeroshot import summarize_seeds
from actionlm.text.encode import EMBEDDING_SCHEMA
from actionlm.train.tokenize import SENTENCE_SCHEMA

CLASSES = ["drink water", "pickup", "throw", "sit down", "stand up", "head", "hand", "arm"]
SEEN = 6  # classes 6 and 7 are held out under the zero-shot split
CODES, STEPS, WIDTH = 16, 8, 16


def save_recognizer(folder, llm, method):
    base = {"llm": str(llm), **base_fingerprint(llm)}
    torch.manual_seed(0)
    if method == "llm_ar":
        spec = RecognizerSpec(method, CLASSES, list(CLASSES), LoraSettings(r=2), base, codes=CODES)
        recognizer = Recognizer(spec, llm, torch.device("cpu"), torch.randn(CODES, 64))
    else:
        spec = RecognizerSpec(method, CLASSES, [f"{c}: head tilts" for c in CLASSES],
                              LoraSettings(r=2), base, features={"n_steps": STEPS, "width": WIDTH},
                              bridge=BridgeConfig("tqp", queries=2, segments=2, heads=2))
        recognizer = Recognizer(spec, llm, torch.device("cpu"))
    recognizer.save(folder)
    return folder


def split_rows(zero_shot: bool, per_class: int = 3, seen_test: bool = False):
    """(label, split) rows: every class in train and test, or seen train / unseen test (and
    with ``seen_test`` one sample of each seen class in test_seen, for GZSL)."""
    rows = []
    for label in range(len(CLASSES)):
        for i in range(per_class):
            test = label >= SEEN if zero_shot else i == 0
            seen_test_row = seen_test and not test and i == 0
            rows.append((label, "test" if test else "test_seen" if seen_test_row else "train"))
    return rows


def write_sentences(path, zero_shot: bool, seen_test: bool = False):
    rows = split_rows(zero_shot, seen_test=seen_test)
    gen = torch.Generator().manual_seed(1)
    tokens = [(2 * label + torch.randint(0, 2, (5,), generator=gen)).tolist() for label, _ in rows]
    write_parquet(pa.table({
        "sample_id": [f"s{i}" for i in range(len(rows))], "split": [s for _, s in rows],
        "label": pa.array([lab for lab, _ in rows], pa.int16()),
        "tokens": pa.array(tokens, pa.list_(pa.int16())),
        "n_tokens": pa.array([5] * len(rows), pa.int16()),
    }, schema=with_metadata(SENTENCE_SCHEMA, codes=CODES, vqvae="none", protocol="p")), path)
    return path


def write_feature_table(path, zero_shot: bool, per_class: int = 3):
    """Class c's features centre on a one-hot direction: a linear map separates them."""
    rows = split_rows(zero_shot, per_class)
    gen = np.random.default_rng(0)
    labels = np.array([lab for lab, _ in rows])
    features = gen.normal(0, 0.1, (len(rows), STEPS, WIDTH)).astype(np.float32)
    features[np.arange(len(rows)), :, labels] += 1.0
    write_features(path, features, labels, [f"s{i}" for i in range(len(rows))],
                   [s for _, s in rows], {"method": "test"})
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_llm):
    root = tmp_path_factory.mktemp("eval")
    write_parquet(pa.table({"label": pa.array(range(len(CLASSES)), pa.int16()),
                            "class_name": CLASSES, "native_id": list(range(1, 9))}),
                  root / "classes.parquet")
    return {
        "root": root, "classes": root / "classes.parquet",
        "llm_ar": save_recognizer(root / "llm_ar", tiny_llm(0), "llm_ar"),
        "sugar": save_recognizer(root / "sugar", tiny_llm(0), "sugar"),
        "sentences": write_sentences(root / "sentences.parquet", zero_shot=False),
        "unseen_sentences": write_sentences(root / "unseen_sentences.parquet", zero_shot=True),
        "gzsl_sentences": write_sentences(root / "gzsl_sentences.parquet", zero_shot=True,
                                          seen_test=True),
        "features": write_feature_table(root / "features.parquet", zero_shot=False, per_class=6),
        "unseen_features": write_feature_table(root / "unseen.parquet", zero_shot=True),
    }


def eval_args(setup, out, method, inputs, *extra):
    """The namespace `actionlm evaluate` hands over: its own options plus ours."""
    parser = argparse.ArgumentParser()
    add_llm_arguments(parser)
    args = parser.parse_args(list(extra))
    args.__dict__.update(method=method, model=setup.get(method), classes=setup["classes"],
                         inputs=setup[inputs], out=out, device="cpu", precision="fp32",
                         batch_size=4)
    return args


def direct_scores(setup, method, inputs, candidates, listed):
    recognizer = load_recognizer(setup[method], "cpu")
    answers = tokenize_answers(recognizer.tokenizer, [recognizer.answer_text(c) for c in candidates])
    with torch.no_grad():
        embeds, mask = recognizer.prompt_embeddings(inputs, candidates if listed else None)
        return score_answers(recognizer.model, embeds, mask, answers)


def test_closed_set_ranks_every_class_once(setup, tmp_path):
    metrics = evaluate_llm(eval_args(setup, tmp_path, "llm_ar", "sentences"))
    table = pq.read_table(tmp_path / "predictions.parquet")
    test = pq.read_table(setup["sentences"]).to_pandas().query("split == 'test'")
    assert table["sample_id"].to_pylist() == test["sample_id"].tolist()
    assert table_metadata(table, "class_names") == CLASSES
    expected = direct_scores(setup, "llm_ar", test["tokens"].map(list).tolist(), CLASSES, False)
    assert table["pred"].to_pylist() == expected.argmax(1).tolist()
    assert [t[:5] for t in table["top5"].to_pylist()] == expected.topk(5).indices.tolist()
    assert metrics["top1"] == pytest.approx(np.mean(expected.argmax(1).numpy() == test["label"]))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["normalize"] == "sum" and written["protocol"] == "p"


def test_zero_shot_ranks_the_held_out_classes_listed_in_the_prompt(setup, tmp_path):
    metrics = evaluate_llm(eval_args(setup, tmp_path, "llm_ar", "unseen_sentences", "--zero-shot"))
    assert metrics["class_names"] == CLASSES[SEEN:] and metrics["top5"] == 1.0  # K = 2
    table = pq.read_table(tmp_path / "predictions.parquet").to_pandas()
    test = pq.read_table(setup["unseen_sentences"]).to_pandas().query("split == 'test'")
    assert (table["label"] == test["label"].to_numpy() - SEEN).all()
    tokens = test["tokens"].map(list).tolist()
    listed = direct_scores(setup, "llm_ar", tokens, CLASSES[SEEN:], True)
    unlisted = direct_scores(setup, "llm_ar", tokens, CLASSES[SEEN:], False)
    np.testing.assert_allclose(table["score"], listed.max(1).values, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(listed, unlisted)  # the candidate list is in the instruction


def test_gzsl_lists_and_ranks_every_class_for_unseen_and_seen_test_samples(setup, tmp_path):
    metrics = evaluate_llm(eval_args(setup, tmp_path, "llm_ar", "gzsl_sentences", "--zero-shot",
                                     "--gzsl"))
    assert metrics["class_names"] == CLASSES[SEEN:]  # ZSL: the unseen classes only
    rows = pq.read_table(setup["gzsl_sentences"]).to_pandas()
    rows = rows[rows["split"].isin(["test", "test_seen"])]
    assert set(rows["split"]) == {"test", "test_seen"}
    scores = direct_scores(setup, "llm_ar", rows["tokens"].map(list).tolist(), CLASSES, True)
    expected = gzsl_accuracy(scores.numpy(), rows["label"].to_numpy(), [SEEN, SEEN + 1])
    for key in ("seen", "unseen", "harmonic"):
        assert metrics["gzsl"][key] == pytest.approx(expected[key])
    assert "calibrated" not in metrics["gzsl"]
    with pytest.raises(ActionlmError, match="no test_seen rows"):
        evaluate_llm(eval_args(setup, tmp_path, "llm_ar", "unseen_sentences", "--zero-shot",
                               "--gzsl"))


def test_sugar_is_also_evaluated_by_what_it_generates(setup, tmp_path):
    args = eval_args(setup, tmp_path, "sugar", "features", "--generate-tokens", "3",
                     "--normalize", "mean")
    args.model = setup["sugar"] / "recognizer.json"  # the folder or its recognizer.json
    metrics = evaluate_llm(args)
    assert "protocol" not in metrics  # the features table records none
    table = pq.read_table(tmp_path / "predictions.parquet").to_pandas()
    assert len(table) == len(CLASSES) and table_metadata(
        pq.read_table(tmp_path / "predictions.parquet"), "normalize") == "mean"
    generated, ranking = table["generated"].tolist(), table["generated_ranking"].map(list).tolist()
    assert all(isinstance(t, str) and len(t.split()) <= 3 for t in generated)
    assert ranking == [[i] if (i := match_answer(t, CLASSES)) >= 0 else [] for t in generated]
    generation = metrics["generation"]  # an answer naming no class is wrong, and listed
    assert generation["top1"] == pytest.approx(np.mean(
        [r[:1] == [y] for r, y in zip(ranking, table["label"])]))
    assert generation["no_class_samples"] == [s for s, r in zip(table["sample_id"], ranking)
                                              if not r]
    assert generation["no_class"] == len(generation["no_class_samples"]) / len(table)
    assert "top5" not in generation and generation["prompt"] == "trained"


def test_zero_shot_generation_asks_for_the_top_five_listed_classes(setup, tmp_path):
    metrics = evaluate_llm(eval_args(setup, tmp_path, "llm_ar", "unseen_sentences", "--zero-shot",
                                     "--generate-tokens", "4"))
    table = pq.read_table(tmp_path / "predictions.parquet").to_pandas()
    recognizer = load_recognizer(setup["llm_ar"], "cpu")
    assert "please choose the top five most compatible action from: hand, arm." in \
        recognizer.prompt_text(CLASSES[SEEN:], ranking=True)
    tokens = pq.read_table(setup["unseen_sentences"]).to_pandas().query("split == 'test'")["tokens"]
    with torch.no_grad():
        embeds, mask = recognizer.prompt_embeddings(tokens.map(list).tolist(), CLASSES[SEEN:],
                                                    ranking=True)
        assert table["generated"].tolist() == generate_answers(
            recognizer.model, recognizer.tokenizer, embeds, mask, 4)
    ranking = table["generated_ranking"].map(list).tolist()
    assert ranking == [match_ranking(t, CLASSES[SEEN:]) for t in table["generated"]]
    generation = metrics["generation"]
    assert generation["prompt"] == "top five of the candidates"
    assert generation["top5"] == pytest.approx(np.mean(
        [y in r for r, y in zip(ranking, table["label"])]))


def write_text_vectors(path, vectors: np.ndarray, noise: float, gen) -> Path:
    """A text_embeddings.parquet with two texts per class near ``vectors[c]``."""
    rows = [{"class_id": c, "kind": kind, "part": None, "text": f"{kind} {c}", "encoder": "test",
             "embedding": (v + gen.normal(0, noise, v.shape)).astype(np.float32).tolist()}
            for c, v in enumerate(vectors) for kind in ("synonym", "paragraph")]
    write_parquet(pa.Table.from_pylist(rows, schema=with_metadata(
        EMBEDDING_SCHEMA, encoder="test", width=vectors.shape[1])), path)
    return path


def test_text_probe_names_classes_it_never_trained_on(setup, tmp_path):
    """Features made from each class's text vector: the projection learnt on the six seen
    classes ranks the two unseen ones by their texts (a linear classifier would score 0);
    with the unseen classes' texts swapped, it names the wrong one."""
    gen = np.random.default_rng(1)
    texts = gen.normal(size=(len(CLASSES), 4))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    rows = split_rows(zero_shot=True, per_class=6)
    labels = np.array([label for label, _ in rows])
    mixed = texts[labels] @ gen.normal(size=(4, WIDTH))
    features = mixed[:, None] + gen.normal(0, 0.05, (len(rows), STEPS, WIDTH))
    write_features(tmp_path / "f.parquet", features.astype(np.float32), labels,
                   [f"s{i}" for i in range(len(rows))], [s for _, s in rows], {"method": "t"})
    swapped = texts.copy()
    swapped[[SEEN, SEEN + 1]] = texts[[SEEN + 1, SEEN]]
    results = {}
    for name, vectors in (("texts", texts), ("swapped", swapped)):
        args = eval_args(setup, tmp_path / name, "text_probe", "features", "--zero-shot",
                         "--texts", str(write_text_vectors(tmp_path / f"{name}.parquet",
                                                           vectors, 0.01, gen)))
        args.inputs = tmp_path / "f.parquet"
        results[name] = evaluate_llm(args)
    assert results["texts"]["top1"] >= 0.9 and results["swapped"]["top1"] <= 0.1
    assert results["texts"]["class_names"] == CLASSES[SEEN:]
    assert results["texts"]["trained_classes"] == CLASSES[:SEEN]
    args = eval_args(setup, tmp_path / "no_texts", "text_probe", "features")
    with pytest.raises(ActionlmError, match="needs --texts"):
        evaluate_llm(args)


def test_bad_input_is_refused(setup, tmp_path):
    with pytest.raises(ActionlmError, match="a llm_ar recognizer, not sugar"):
        args = eval_args(setup, tmp_path, "sugar", "features")
        args.model = setup["llm_ar"]
        evaluate_llm(args)
    with pytest.raises(ActionlmError, match="--zero-shot"):
        untrained = pq.read_table(setup["classes"]).to_pandas()
        untrained.loc[7, "class_name"] = "foot"
        untrained.to_parquet(tmp_path / "other_classes.parquet")
        args = eval_args(setup, tmp_path, "llm_ar", "sentences")
        args.classes = tmp_path / "other_classes.parquet"
        evaluate_llm(args)
    with pytest.raises(ActionlmError, match="neither action sentences"):
        args = eval_args(setup, tmp_path, "llm_ar", "sentences")
        args.inputs = setup["classes"]
        evaluate_llm(args)
    with pytest.raises(ActionlmError, match="--method llm_ar needs --model"):
        args = eval_args(setup, tmp_path, "llm_ar", "sentences")
        args.model = None
        evaluate_llm(args)


def test_zero_shot_seeds_are_averaged(tmp_path):
    paths = []
    for seed, top1 in enumerate([0.5, 0.7]):
        paths.append(tmp_path / f"{seed}.json")
        paths[-1].write_text(json.dumps({"method": "llm_ar", "protocol": f"unseen3_seed{seed}",
                                         "n": 10, "top1": top1, "top5": 1.0,
                                         "mean_class_accuracy": top1,
                                         "generation": {"top1": top1 / 2, "top5": 0.9,
                                                        "no_class": 0.1 * seed},
                                         "gzsl": {"seen": 0.8, "unseen": top1, "harmonic": top1,
                                                  "calibrated": {"seen": 0.7, "unseen": 0.6,
                                                                 "harmonic": 0.1 + seed}}}))
    summary = summarize_seeds(paths)
    assert summary["top1"] == pytest.approx(0.6) and summary["runs"] == 2
    assert summary["top1_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert summary["generation"]["top1"] == pytest.approx(0.3)
    assert summary["generation"]["no_class"] == pytest.approx(0.05)
    assert summary["gzsl"]["harmonic"] == pytest.approx(0.6)
    assert summary["gzsl"]["calibrated"]["harmonic"] == pytest.approx(0.6)
    assert summary["gzsl"]["calibrated"]["harmonic_std"] == pytest.approx(np.std([0.1, 1.1],
                                                                                ddof=1))
    (tmp_path / "other.json").write_text(json.dumps({**json.loads(paths[0].read_text()),
                                                     "method": "sugar"}))
    with pytest.raises(ActionlmError, match="different methods"):
        summarize_seeds([*paths, tmp_path / "other.json"])
