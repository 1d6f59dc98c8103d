"""No held-out class reaches training under a zero-shot protocol (unseen{K}_seed{S}: seen
classes in train/val, unseen classes in test only). Each training stage runs twice on the same
split, once on the real inputs and once with every unseen class's inputs replaced (skeletons,
class names, text vectors and texts, brief descriptions, features, action sentences); the saved
weights, buffers included, must be bit-identical: anything a stage read of an unseen class
would change them (SUGAR's class_text prototypes did, holding every class's mean text)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from actionlm.data.features import write_features
from actionlm.data.prepare import prepare
from actionlm.data.split_files import SplitFiles
from actionlm.io import table_metadata, with_metadata, write_parquet
from actionlm.knowledge.describe import DESCRIPTIONS_SCHEMA
from actionlm.llm.lora import train_lora
from actionlm.llm.recognizer import ADAPTER_FILE
from actionlm.models.encoder import EncoderConfig, SkeletonEncoder
from actionlm.text.class_texts import ClassTexts
from actionlm.train.encoder import EncoderTraining, LanguageTargets
from actionlm.train.encoder import TrainConfig as EncoderTrainConfig
from actionlm.train.tokenize import SENTENCE_SCHEMA
from actionlm.train.vqvae import train_vqvae
from test_encoder import TEXT_WIDTH, text_table
from test_encoder import TINY as ENCODER_TINY
from test_lora import CODES, lora_args, save_tiny_vqvae, write_classes
from test_vqvae import FAST as VQ_FAST
from test_vqvae import SMALL_LOSS
from test_vqvae import TINY as VQ_TINY

PROTOCOL = "unseen5_seed0"
N_CLASSES = 19  # the synthetic dataset's
ENCODER_RUN = EncoderTrainConfig(epochs=2, batch_size=16, lr=0.05, warmup_epochs=1,
                                 schedule="cosine", seed=1)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def assert_same_weights(a: Path, b: Path) -> None:
    """Every tensor of two safetensors files equal bit for bit, and the files byte for byte."""
    first, second = load_file(a), load_file(b)
    assert sorted(first) == sorted(second)
    differ = [k for k in first if not (first[k].dtype == second[k].dtype
                                       and torch.equal(first[k], second[k]))]
    assert not differ, f"{a.name}: held-out classes changed {differ}"
    assert a.read_bytes() == b.read_bytes()


# --- a zero-shot split and its altered twin ----------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The synthetic dataset (19 classes, 114 samples) under unseen5_seed0, with a val split."""
    out = tmp_path_factory.mktemp("zs") / "data"
    prepare("synthetic", None, out, dataset=None, protocols=[PROTOCOL], workers=1,
            val_fraction=0.2, synthetic={"n_subjects": 2, "n_replications": 1})
    return out


@pytest.fixture(scope="module")
def unseen(data_dir) -> list[int]:
    """The held-out labels the split table records; their samples are all in test, and
    every seen class trains (the precondition of every test here)."""
    split = pq.read_table(data_dir / "splits" / f"{PROTOCOL}.parquet")
    held_out = table_metadata(split, "unseen_labels")
    assert held_out and len(held_out) == 5
    labels = pq.read_table(data_dir / "skeletons.parquet", columns=["sample_id", "label"])
    label_of = dict(zip(labels["sample_id"].to_pylist(), labels["label"].to_pylist()))
    rows = [(label_of[s], part) for s, part in zip(split["sample_id"].to_pylist(),
                                                   split["split"].to_pylist())]
    assert {part for label, part in rows if label in held_out} == {"test"}
    assert {label for label, part in rows if part == "train"} == set(range(N_CLASSES)) - set(
        held_out)
    return held_out


def altered_skeletons(source: Path, target: Path, unseen: list[int]) -> Path:
    """skeletons.parquet with the unseen classes' joints scaled and noised, names replaced."""
    table = pq.read_table(source)
    labels = table["label"].to_numpy()
    joints = table["joints"].combine_chunks()
    offsets = joints.offsets.to_numpy()
    values = joints.values.to_numpy(zero_copy_only=False).copy()
    hit = np.isin(labels, unseen)[np.repeat(np.arange(len(labels)), np.diff(offsets))]
    values[hit] = 3.0 * values[hit] + np.random.default_rng(7).normal(size=int(hit.sum()))
    field = table.schema.field("joints")
    table = table.set_column(table.schema.get_field_index("joints"), field, pa.ListArray
                             .from_arrays(pa.array(offsets), pa.array(values, pa.float32()))
                             .cast(field.type))
    names = [f"held out {k}" if k in unseen else n
             for k, n in zip(labels.tolist(), table["class_name"].to_pylist())]
    table = table.set_column(table.schema.get_field_index("class_name"),
                             table.schema.field("class_name"), pa.array(names, pa.string()))
    write_parquet(table, target)
    return target


def altered_classes(source: Path, target: Path, unseen: list[int]) -> Path:
    table = pq.read_table(source)
    names = [f"held out {k}" if k in unseen else n
             for k, n in zip(table["label"].to_pylist(), table["class_name"].to_pylist())]
    write_parquet(table.set_column(table.schema.get_field_index("class_name"),
                                   table.schema.field("class_name"), pa.array(names)), target)
    return target


def altered_texts(source: Path, target: Path, unseen: list[int]) -> Path:
    """The text table with the unseen classes' rows given other vectors and texts (same rows,
    same order: the seen classes' pools are untouched)."""
    table = pq.read_table(source)
    frame = table.to_pandas()
    other = pq.read_table(text_table(target.with_suffix(".other.parquet"), range(N_CLASSES),
                                     seed=99)).to_pandas()
    hit = frame["class_id"].isin(unseen).to_numpy()
    frame.loc[hit, "embedding"] = other.loc[hit, "embedding"]
    frame.loc[hit, "text"] = [f"another text {i}" for i in range(int(hit.sum()))]
    write_parquet(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False), target)
    return target


@pytest.fixture(scope="module")
def inputs(data_dir, unseen, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """``original`` and ``altered`` inputs over the same split table."""
    folder = tmp_path_factory.mktemp("altered")
    texts = text_table(folder / "texts.parquet", range(N_CLASSES))
    original = {"skeletons": data_dir / "skeletons.parquet",
                "classes": data_dir / "classes.parquet", "texts": texts}
    altered = {
        "skeletons": altered_skeletons(original["skeletons"], folder / "skeletons.parquet",
                                       unseen),
        "classes": altered_classes(original["classes"], folder / "classes.parquet", unseen),
        "texts": altered_texts(texts, folder / "altered_texts.parquet", unseen),
    }
    for key in ("skeletons", "texts"):  # the alteration is real
        assert original[key].read_bytes() != altered[key].read_bytes()
    return {"original": original, "altered": altered}


def files(data_dir: Path, variant: dict) -> SplitFiles:
    return SplitFiles(variant["skeletons"], data_dir / "splits" / f"{PROTOCOL}.parquet")


# --- skeleton encoders -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["gap", "sugar"])
def test_encoder_weights_do_not_depend_on_the_held_out_classes(method, data_dir, unseen,
                                                               inputs, tmp_path):
    """GAP and SUGAR trained on the real inputs and on inputs whose unseen classes have other
    skeletons, names and texts: best and last checkpoints bit-identical, curves equal. SUGAR's
    class_text is the seen classes' mean texts, zero rows for the unseen ones."""
    curves = {}
    for name, variant in inputs.items():
        training = EncoderTraining(files(data_dir, variant), variant["classes"], tmp_path / name,
                                   {"method": method, **ENCODER_TINY}, ENCODER_RUN,
                                   variant["texts"], torch.device("cpu"))
        curves[name] = [{k: v for k, v in row.items() if k != "seconds"}
                        for row in training.run(checkpoint_every=0)]
    for weights in ("best.safetensors", "last.safetensors"):
        assert_same_weights(tmp_path / "original" / weights, tmp_path / "altered" / weights)
    assert curves["original"] == curves["altered"]
    if method == "sugar":
        class_text = load_file(tmp_path / "original" / "last.safetensors")["class_text"]
        empty = (class_text == 0).all(1)
        assert empty.nonzero().flatten().tolist() == unseen


def test_sugar_prototypes_of_a_closed_set_are_every_class_mean_text(inputs):
    """When every class trains, class_text is what it always was: each class's normalised
    mean positive text (bit for bit)."""
    texts = ClassTexts(inputs["original"]["texts"], N_CLASSES)
    model = SkeletonEncoder(EncoderConfig(method="sugar", layout="ntu25", num_class=N_CLASSES,
                                          text_width=TEXT_WIDTH, **ENCODER_TINY))
    targets = LanguageTargets(model, texts, ENCODER_RUN, None)
    every = targets.vectors.means(targets.pool)
    assert torch.equal(targets.prototypes(torch.arange(N_CLASSES).repeat(2)), every)
    some = targets.prototypes(torch.tensor([3, 0, 3]))
    assert torch.equal(some[[0, 3]], every[[0, 3]]) and not some[[1, 2, 4]].any()


# --- LLM-AR's VQ-VAE ---------------------------------------------------------------------------


def test_vqvae_weights_do_not_depend_on_the_held_out_skeletons(data_dir, inputs, fake_llm,
                                                                tmp_path):
    """The tokenizer's VQ-VAE (normalisation, codebook initialisation, training) sees only
    the train split: unseen classes' skeletons altered, weights bit-identical."""
    for name, variant in inputs.items():
        train_vqvae(files(data_dir, variant), fake_llm, tmp_path / name, VQ_TINY, SMALL_LOSS,
                    replace(VQ_FAST, epochs=1), "cpu", checkpoint_every=0)
    assert_same_weights(tmp_path / "original" / "vqvae.safetensors",
                        tmp_path / "altered" / "vqvae.safetensors")


# --- LLM recognizers ---------------------------------------------------------------------------

# class names (and brief descriptions) in the tiny LLM's vocabulary: renaming changes tokens
LLM_CLASSES = ["drink water", "pickup", "throw", "sit down", "stand up", "head tilts",
               "hand reaches", "leg bends"]
LLM_UNSEEN = [1, 4, 6]
RENAMED = {1: "foot remains", 4: "arm lifts", 6: "hip stationary"}
BRIEFS = ["hand lifts", "arm bends", "hand reaches forward", "hip bends", "leg lifts",
          "head tilts forward", "arm reaches", "leg remains stationary"]
OTHER_BRIEFS = {1: "foot tilts forward head bends", 4: "head remains", 6: "foot lifts"}
PER_CLASS, STEPS, WIDTH = 3, 8, 16  # CODES: test_lora's, as its VQ-VAE


def llm_rows() -> list[tuple[int, str]]:
    """(label, split): seen classes train (one val sample each), unseen classes test."""
    return [(label, "test" if label in LLM_UNSEEN else ("val" if i == 0 else "train"))
            for label in range(len(LLM_CLASSES)) for i in range(PER_CLASS + 1)]


def write_descriptions(path: Path, names: list[str], briefs: list[str]) -> Path:
    rows = [{"class_id": k, "class_name": name, "kind": kind, "part": None, "text": text,
             "source": "test", "request_hash": None}
            for k, name in enumerate(names)
            for kind, text in (("motion", f"{name} {briefs[k]}"), ("brief", briefs[k]))]
    write_parquet(pa.Table.from_pylist(rows, schema=DESCRIPTIONS_SCHEMA), path)
    return path


def llm_inputs(folder: Path, altered: bool, vqvae: Path) -> dict[str, Path]:
    """classes, descriptions, encoder features and action sentences over ``llm_rows``; the
    altered set renames the unseen classes and changes their briefs, features and tokens."""
    folder.mkdir()
    names = [RENAMED.get(k, n) if altered else n for k, n in enumerate(LLM_CLASSES)]
    briefs = [OTHER_BRIEFS.get(k, b) if altered else b for k, b in enumerate(BRIEFS)]
    rows = llm_rows()
    labels = np.array([label for label, _ in rows])
    held_out = np.isin(labels, LLM_UNSEEN)
    rng = np.random.default_rng(0)
    features = rng.normal(0, 0.1, (len(rows), STEPS, WIDTH)).astype(np.float32)
    features[np.arange(len(rows)), :, labels] += 1.0
    tokens = (2 * labels[:, None] + rng.integers(0, 2, (len(rows), 5))).astype(np.int16)
    if altered:
        features[held_out] = rng.normal(5, 3, features[held_out].shape)
        tokens[held_out] = CODES - 1 - tokens[held_out]
    ids, splits = [f"s{i}" for i in range(len(rows))], [s for _, s in rows]
    write_features(folder / "features.parquet", features, labels, ids, splits, {"method": "t"})
    write_parquet(pa.table({
        "sample_id": ids, "split": splits, "label": pa.array(labels, pa.int16()),
        "tokens": pa.array(tokens.tolist(), pa.list_(pa.int16())),
        "n_tokens": pa.array([5] * len(rows), pa.int16()),
    }, schema=with_metadata(SENTENCE_SCHEMA, codes=CODES, vqvae=str(vqvae))),
        folder / "sentences.parquet")
    return {"classes": write_classes(folder / "classes.parquet", names),
            "descriptions": write_descriptions(folder / "descriptions.parquet", names, briefs),
            "features": folder / "features.parquet", "sentences": folder / "sentences.parquet"}


@pytest.fixture(scope="module")
def llm_setup(tmp_path_factory, tiny_llm) -> dict:
    folder = tmp_path_factory.mktemp("llm-zs")
    save_tiny_vqvae(folder / "vqvae.safetensors")
    return {"llm": tiny_llm(0), "vqvae": folder / "vqvae.safetensors",
            **{name: llm_inputs(folder / name, name == "altered", folder / "vqvae.safetensors")
               for name in ("original", "altered")}}


@pytest.mark.parametrize("method", ["llm_ar", "sugar"])
def test_lora_weights_do_not_depend_on_the_held_out_classes(method, llm_setup, tmp_path):
    """LoRA + bridge trained on the real inputs and on inputs whose unseen classes have other
    names, brief descriptions (SUGAR's answers) and features or action tokens: adapter
    bit-identical (training prompts list no classes; answers are the train labels' only)."""
    steps = []
    for name in ("original", "altered"):
        given = llm_setup[name]
        if method == "llm_ar":
            chosen = {"classes": given["classes"], "sentences": given["sentences"],
                      "vqvae": llm_setup["vqvae"]}
            extra = ()
        else:
            chosen = {"classes": given["classes"], "features": given["features"],
                      "descriptions": given["descriptions"]}
            extra = ("--method", "sugar", "--queries", "2", "--segments", "2")
        _, curves = train_lora(lora_args({"llm": llm_setup["llm"], **chosen}, tmp_path / name,
                                         "--epochs", "1", *extra))
        steps.append([c["step"] for c in curves])
    assert_same_weights(tmp_path / "original" / ADAPTER_FILE, tmp_path / "altered" / ADAPTER_FILE)
    assert steps == [[2], [2]]  # the 15 train samples alone, in batches of 6
