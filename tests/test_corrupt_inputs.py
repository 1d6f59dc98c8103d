"""Corrupt intermediate tables: every command that reads a prepared table (skeletons.parquet,
a split table, classes.parquet, embedded_splits.parquet) or an LLM stage's input table
(action_sentences.parquet, features.parquet, descriptions, text embeddings) stops on a
truncated file, a file of garbage bytes or a file without a column it needs with exit code 2
and one ``actionlm: error:`` line naming that file; never an Arrow traceback.

One small prepared dataset is shared; each corrupt copy sits in its own folder, and every
command gets the good files but one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actionlm.cli import main
from actionlm.data.classes import read_class_names
from actionlm.data.features import read_features, write_features
from actionlm.errors import ActionlmError
from actionlm.eval.llm import read_inputs
from actionlm.llm.lora import class_answers, read_action_sentences, vqvae_codebook
from actionlm.models.encoder import EncoderConfig, SkeletonEncoder, save_encoder
from actionlm.models.vqvae import ActionVQVAE, VQVAEConfig, save_vqvae
from actionlm.text.encode import load_text_embeddings, read_descriptions

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# the column each table's readers need that its column-dropped copy lacks
DROPPED = {"skeletons": "label", "split": "split", "classes": "class_name",
           "embedded_splits": "protocol"}


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def garbage(data: bytes) -> bytes:
    return np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {"truncated": truncated, "garbage": garbage}
KINDS = [*CORRUPTIONS, "column_dropped"]


@pytest.fixture(scope="module")
def files(small_ntu_data, tmp_path_factory) -> dict[str, Path]:
    """The good inputs of every command here (the prepared tables, tiny models)."""
    root = tmp_path_factory.mktemp("good")
    names = read_class_names(small_ntu_data / "classes.parquet")
    encoders = {}
    for method in ("ce", "gap"):
        encoders[method] = root / f"{method}.safetensors"
        save_encoder(SkeletonEncoder(EncoderConfig(
            method=method, layout="ntu25", num_class=len(names), base_channels=4, window=8,
            text_width=8 if method == "gap" else 0)), encoders[method])
    save_vqvae(ActionVQVAE(VQVAEConfig(width=8, joints=25, window=8, codes=4, channels=8,
                                       depth=0)), root / "vqvae.safetensors")
    return {"skeletons": small_ntu_data / "skeletons.parquet",
            "split": small_ntu_data / "splits" / "xview.parquet",
            "classes": small_ntu_data / "classes.parquet",
            "embedded_splits": small_ntu_data / "embedded_splits.parquet",
            "ce": encoders["ce"], "gap": encoders["gap"], "vqvae": root / "vqvae.safetensors"}


def corrupt_copy(good: Path, kind: str, table: str, folder: Path) -> Path:
    """A copy of ``good`` (same name) in ``folder``, corrupted as ``kind`` says."""
    folder.mkdir(parents=True)
    bad = folder / good.name
    if kind == "column_dropped":
        pq.write_table(pq.read_table(good).drop_columns([DROPPED[table]]), bad)
    else:
        bad.write_bytes(CORRUPTIONS[kind](good.read_bytes()))
    return bad


def command(name: str, f: dict[str, Path], out: Path) -> list[str]:
    """The command line of ``name`` over the files ``f``, with tiny models and CPU."""
    split = ["--skeletons", str(f["skeletons"]), "--split", str(f["split"])]
    device = ["--device", "cpu", "--threads", "1"]
    return {
        "split": ["split", "--skeletons", str(f["skeletons"]), "--classes", str(f["classes"]),
                  "--embedded-splits", str(f["embedded_splits"]), "--protocol", "xview",
                  "--out", str(out / "xview.parquet")],
        "train-encoder": ["train-encoder", "--method", "ce", *split, "--classes",
                          str(f["classes"]), "--base-channels", "4", "--window", "8",
                          "--epochs", "1", "--out", str(out), *device],
        "evaluate-ce": ["evaluate", "--method", "ce", "--model", str(f["ce"]), *split,
                        "--classes", str(f["classes"]), "--out", str(out), *device],
        "evaluate-gap": ["evaluate", "--method", "gap", "--model", str(f["gap"]), *split,
                         "--classes", str(f["classes"]), "--out", str(out), *device],
        "extract-features": ["extract-features", "--model", str(f["ce"]), *split,
                             "--out", str(out / "features.parquet"), *device],
        "tokenize": ["tokenize", *split, "--vqvae", str(f["vqvae"]), "--out", str(out),
                     *device],
        "train-vqvae": ["train-vqvae", *split, "--llm", str(f["llm"]), "--window", "8",
                        "--codes", "4", "--channels", "8", "--depth", "0", "--epochs", "1",
                        "--out", str(out), *device],
    }[name]


# command -> the tables it reads
READS = {
    "split": ("skeletons", "classes", "embedded_splits"),
    "train-encoder": ("skeletons", "split", "classes"),
    "evaluate-ce": ("skeletons", "split", "classes"),
    "evaluate-gap": ("skeletons", "split", "classes"),
    "extract-features": ("skeletons", "split"),
    "tokenize": ("skeletons", "split"),
    "train-vqvae": ("skeletons", "split"),
}
CASES = [(name, table, kind) for name, tables in READS.items() for table in tables
         for kind in KINDS]


def test_the_corpus_covers_every_reader_and_corruption():
    assert len(CASES) == 54
    assert {table for _, table, _ in CASES} == set(DROPPED)


@pytest.mark.parametrize(("name", "table", "kind"), CASES)
def test_corrupt_table_is_a_one_line_error(name, table, kind, files, fake_llm, tmp_path,
                                           capsys):
    bad = corrupt_copy(files[table], kind, table, tmp_path / "corrupt")
    argv = command(name, {**files, "llm": fake_llm, table: bad}, tmp_path / "out")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"actionlm: error: {bad}: "), lines[0]
    reason = ("missing columns" if kind == "column_dropped"
              else "not a Parquet table, or truncated")
    assert reason in lines[0]
    assert not (tmp_path / "out" / "xview.parquet").exists()
    assert not (tmp_path / "out" / "features.parquet").exists()


# --- the LLM stages' input tables --------------------------------------------------------------


def llm_inputs(folder: Path) -> dict[str, Path]:
    """A valid table of each LLM-stage input kind."""
    write_features(folder / "features.parquet", np.zeros((2, 1, 4), np.float32), [0, 1],
                   ["train", "test"], ["a", "b"], encoder={})
    tables = {
        "action_sentences": pa.table({"sample_id": ["a"], "split": ["train"], "label": [0],
                                      "tokens": [[0, 1]], "n_tokens": [2]}),
        "descriptions": pa.table({"class_id": [0, 0], "kind": ["part", "brief"],
                                  "part": ["head", None],
                                  "text": ["tilts forward", "The person nods."]}),
        "text_embeddings": pa.table({"class_id": [0], "embedding": [[0.0, 1.0]]}),
    }
    for name, table in tables.items():
        pq.write_table(table, folder / f"{name}.parquet")
    return {name: folder / f"{name}.parquet" for name in ["features", *tables]}


READERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "read_features": ("features", read_features),
    "read_inputs (sugar)": ("features", lambda p: read_inputs(p, "test")),
    "read_inputs (llm_ar)": ("action_sentences", lambda p: read_inputs(p, "test")),
    "read_action_sentences": ("action_sentences", lambda p: read_action_sentences(p, 4, 2)),
    "vqvae_codebook": ("action_sentences", lambda p: vqvae_codebook(p, None, 16)),
    "class_answers": ("descriptions", lambda p: class_answers(["a"], p, 12)),
    "read_descriptions": ("descriptions", read_descriptions),
    "load_text_embeddings": ("text_embeddings", load_text_embeddings),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_truncated_llm_input_is_refused_naming_the_file(reader, tmp_path):
    table, read = READERS[reader]
    good = llm_inputs(tmp_path)[table]
    bad = corrupt_copy(good, "truncated", table, tmp_path / "corrupt")
    with pytest.raises(ActionlmError) as err:
        read(bad)
    message = str(err.value)
    assert message.startswith(f"{bad}: not a Parquet table, or truncated") and "\n" not in message
