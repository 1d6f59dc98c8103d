"""encode-text: real MiniLM embeddings that mean something, normalised and reproducible;
open_clip ViT-B-32 built with random weights has CLIP's shapes and says it is random."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actionlm.cli import main
from actionlm.errors import ActionlmError, InputError
from actionlm.io import table_metadata
from actionlm.knowledge.describe import descriptions_table
from actionlm.text.encode import encode_tables, file_sha256, load_text_embeddings

ROWS = [
    (0, "hand waving", "synonym", None, "hand waving"),
    (0, "hand waving", "synonym", None, "waving a hand"),
    (0, "hand waving", "part", "hand", "hand opens and moves side to side"),
    (1, "kicking something", "synonym", None, "kicking a ball"),
    (1, "kicking something", "part", "foot", "foot swings forward to strike"),
    (1, "kicking something", "paragraph", None, "hand waving"),  # a repeated text
]


def write_descriptions(path, rows=ROWS):
    table = descriptions_table([
        dict(class_id=c, class_name=name, kind=kind, part=part, text=text, source="test/none",
             request_hash=None) for c, name, kind, part, text in rows])
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("minilm")
    descriptions = write_descriptions(tmp / "descriptions.parquet")
    visual = write_descriptions(tmp / "visual.parquet",
                                [(1, "kicking something", "visual", None, "a leg kicks a ball")])
    out = tmp / "text_embeddings.parquet"
    table = encode_tables([descriptions, visual], out, device="cpu", batch_size=2)
    return descriptions, visual, out, table


def test_minilm_embeddings_are_semantic_and_normalised(minilm):
    _, _, out, _ = minilm
    rows, vectors = load_text_embeddings(out)
    assert vectors.shape == (len(ROWS) + 1 + 2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    by_text = {text: vectors[i] for i, text in enumerate(rows["text"])}
    same = by_text["hand waving"] @ by_text["waving a hand"]
    other = by_text["hand waving"] @ by_text["kicking a ball"]
    assert same > other + 0.3, (same, other)
    assert by_text["kicking a ball"] @ by_text["a leg kicks a ball"] > other
    assert rows.attrs == {"encoder": rows["encoder"][0], "width": 384, "random_init": False}
    assert "all-MiniLM-L6-v2" in rows.attrs["encoder"]


def test_rows_follow_the_inputs_and_metadata_names_them(minilm):
    descriptions, visual, out, table = minilm
    rows, vectors = load_text_embeddings(out)
    assert list(rows.columns) == ["class_id", "kind", "part", "text", "encoder"]
    names = ["hand waving", "kicking something"]  # one name row per class, after the inputs
    assert list(rows["text"]) == [r[4] for r in ROWS] + ["a leg kicks a ball"] + names
    assert list(rows["kind"])[-3:] == ["visual", "name", "name"]
    assert list(rows["class_id"])[-2:] == [0, 1] and rows["part"].isna().sum() == 7
    np.testing.assert_array_equal(vectors[0], vectors[5])  # same text, same vector
    np.testing.assert_array_equal(vectors[0], vectors[-2])  # the name embeds as the text
    sources = table_metadata(table, "sources")
    assert [s["sha256"] for s in sources] == [file_sha256(descriptions), file_sha256(visual)]
    assert [s["rows"] for s in sources] == [len(ROWS), 1]
    assert table_metadata(table, "normalised") is True
    assert table.schema.field("embedding").type == pa.list_(pa.float32())


def test_rerun_gives_identical_embeddings(minilm, tmp_path):
    descriptions, visual, out, _ = minilm
    first = load_text_embeddings(out)[1]
    encode_tables([descriptions, visual], tmp_path / "again.parquet", device="cpu", batch_size=2)
    np.testing.assert_array_equal(first, load_text_embeddings(tmp_path / "again.parquet")[1])
    # another batch size pads differently: equal up to float rounding only
    encode_tables([descriptions, visual], tmp_path / "b64.parquet", device="cpu", batch_size=64)
    np.testing.assert_allclose(first, load_text_embeddings(tmp_path / "b64.parquet")[1], atol=1e-6)


def test_open_clip_random_init_has_clip_shapes_and_says_so(tmp_path):
    long_text = " ".join(["the arm rises slowly"] * 30)  # beyond CLIP's 77 tokens
    descriptions = write_descriptions(
        tmp_path / "d.parquet", ROWS + [(1, "kicking something", "paragraph", None, long_text)])
    runs = {}
    for name in ("a", "b"):
        out = tmp_path / f"{name}.parquet"
        assert main(["encode-text", "--descriptions", str(descriptions), "--out", str(out),
                     "--backend", "open_clip", "--pretrained", "none", "--device", "cpu"]) == 0
        runs[name] = load_text_embeddings(out)
    rows, vectors = runs["a"]
    assert vectors.shape == (len(ROWS) + 1 + 2, 512)  # + one name row per class
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, runs["b"][1])  # random weights drawn from --seed
    assert rows.attrs["random_init"] is True
    assert "RANDOM INIT" in rows.attrs["encoder"] and (rows["encoder"] == rows.attrs["encoder"]).all()
    table = pq.read_table(tmp_path / "a.parquet")
    assert "random weights" in table_metadata(table, "warning")
    assert table_metadata(table, "truncated_texts") == 1


def test_input_problems_name_the_file(tmp_path):
    missing = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"class_id": [0], "kind": ["part"], "part": ["head"]}), missing)
    with pytest.raises(ActionlmError, match="no_text.parquet: missing column.*text"):
        encode_tables([missing], tmp_path / "out.parquet", device="cpu")
    blank = write_descriptions(tmp_path / "blank.parquet", ROWS[:2] + [(0, "x", "part", "hand", "  ")])
    with pytest.raises(InputError, match="blank.parquet row 2: empty text"):
        encode_tables([blank], tmp_path / "out.parquet", device="cpu")
    with pytest.raises(ActionlmError, match="open_clip has no model 'ViT-Q-99'"):
        encode_tables([write_descriptions(tmp_path / "ok.parquet")], tmp_path / "out.parquet",
                      backend="open_clip", model="ViT-Q-99", pretrained="none", device="cpu")
    assert not (tmp_path / "out.parquet").exists()
    with pytest.raises(ActionlmError, match="not a text_embeddings table"):
        load_text_embeddings(missing)
