"""Zero-shot recognition by text similarity, and generalized zero-shot (GZSL) metrics.

Text similarity (``actionlm evaluate --method text_similarity``): the language-aligned
encoders embed a skeleton in their text encoder's space, GAP with its global head (Sec. 3.3,
the first of its part heads), SUGAR with its text head (s of Eq. 3); every candidate class is
the normalised mean of its text embeddings (``--class-texts``: ``names`` (the class name),
``descriptions`` (the kinds the head was trained against: GAP's global text, SUGAR's
sugar_kinds), or ``both``), and candidates rank by cosine similarity. No LLM is involved.

ZSL ranks the unseen classes (the test split's) for the unseen-class samples. GZSL ranks
every class for the samples of ``test`` (unseen classes) and ``test_seen`` (seen classes of
the same subjects): seen accuracy, unseen accuracy (top-1 over each set's samples) and their
harmonic mean H = 2 S U / (S + U) (Xian et al., "Zero-shot learning - the good, the bad and
the ugly", 2018; SynSE Sec. 4). Calibrated stacking (Chao et al., ECCV 2016) subtracts a
constant gamma from the seen classes' scores; gamma is chosen where H is best on the
validation protocol ``{P}_val`` (actionlm.data.zero_shot; its metrics.json records that gamma
as ``gzsl.validation_gamma``) and applied to P (``--calibrate-on`` that metrics.json), never
chosen on P's test side.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from actionlm.data.classes import read_class_names
from actionlm.data.clips import load_sequences, make_clips
from actionlm.data.skeleton_layouts import LAYOUTS
from actionlm.data.split_files import SplitFiles
from actionlm.data.zero_shot import VALIDATION
from actionlm.device import autocast, autocast_dtype
from actionlm.errors import ActionlmError
from actionlm.eval.metrics import write_evaluation
from actionlm.io import read_table, table_metadata
from actionlm.models.encoder import SkeletonEncoder, load_encoder
from actionlm.text.encode import load_text_embeddings

log = logging.getLogger(__name__)

CLASS_TEXTS = ("names", "descriptions", "both")


def class_vectors(path: Path, n_classes: int, kinds: tuple[str, ...] | None = None
                  ) -> torch.Tensor:
    """[K, D]: each class's text vector, the normalised mean of its L2-normalised text
    embeddings of ``kinds`` (None: every kind text_embeddings.parquet holds)."""
    rows, vectors = load_text_embeddings(path)
    chosen = np.ones(len(rows), bool) if kinds is None else rows["kind"].isin(kinds).to_numpy()
    ids = rows["class_id"].to_numpy()[chosen]
    missing = sorted(set(range(n_classes)) - set(ids.tolist()))
    if missing:
        what = "text" if kinds is None else "/".join(kinds) + " text"
        raise ActionlmError(f"{path}: no {what} for class(es) {missing[:10]}: describe and "
                            "encode-text every class of the dataset, unseen ones included")
    normed = F.normalize(torch.tensor(vectors[chosen], dtype=torch.float32), dim=1)
    sums = torch.zeros(n_classes, normed.shape[1]).index_add_(
        0, torch.tensor(ids, dtype=torch.long), normed)
    return F.normalize(sums, dim=1)


def head_kinds(model_path: Path, class_texts: str) -> tuple[str, ...]:
    """The text kinds of ``--class-texts`` for this encoder: ``descriptions`` are those its
    language head was trained against besides the name (its training config.json beside the
    weights: GAP's global text, SUGAR's sugar_kinds)."""
    if class_texts not in CLASS_TEXTS:
        raise ActionlmError(f"--class-texts {class_texts!r}: expected one of {CLASS_TEXTS}")
    if class_texts == "names":
        return ("name",)
    config = model_path.parent / "config.json"
    try:
        saved = json.loads(config.read_text())
        train, method = saved["train"], saved["model"]["method"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ActionlmError(f"{config}: the encoder's training config is unreadable ({err}); "
                            "it names the texts its head learned from") from None
    trained = (train["global_text"],) if method == "gap" else tuple(train["sugar_kinds"])
    return trained if class_texts == "descriptions" else ("name", *trained)


def unseen_labels(split: Path) -> list[int]:
    """The unseen classes a zero-shot split table records (its ``unseen_labels``)."""
    labels = table_metadata(read_table(split, columns=["sample_id"]), "unseen_labels")
    if not labels:
        raise ActionlmError(f"{split}: not a zero-shot split (no unseen_labels in its metadata)")
    return [int(c) for c in labels]


@torch.no_grad()
def language_scores(model: SkeletonEncoder, files: SplitFiles, splits: tuple[str, ...],
                    texts: torch.Tensor, interval: float, device: torch.device,
                    batch_size: int, precision: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """([N, K] cosine similarity of each sample's language embedding to each class vector,
    labels, sample ids) of the samples of ``splits``."""
    store = load_sequences(files, splits, model.cfg.bodies, model.cfg.modality)
    if store.n_joints != LAYOUTS[model.cfg.layout].n_joints:
        raise ActionlmError(f"the encoder was trained on another skeleton layout than "
                            f"{files.skeletons} ({store.n_joints} joints)")
    if texts.shape[1] != model.cfg.text_width:
        raise ActionlmError(f"text vectors of width {texts.shape[1]}; the encoder's language "
                            f"head maps to {model.cfg.text_width} (another text encoder?)")
    out = []
    with autocast(device, precision):
        for start in tqdm(range(0, len(store), batch_size), unit="batch", desc="similarity"):
            index = torch.arange(start, min(start + batch_size, len(store)))
            embedding = model.language_embedding(make_clips(store, index, model.cfg.window,
                                                            (interval,)).to(device))
            out.append(embedding.float().cpu())
    scores = F.normalize(torch.cat(out), dim=1) @ texts.float().T  # float32, outside autocast
    return scores.numpy(), store.labels.numpy(), store.sample_ids


def gzsl_accuracy(scores: np.ndarray, labels: np.ndarray, unseen: list[int],
                  gamma: float = 0.0) -> dict:
    """Seen and unseen top-1 over all K classes, and their harmonic mean, after subtracting
    ``gamma`` from the seen classes' scores (calibrated stacking)."""
    is_unseen_class = np.zeros(scores.shape[1], bool)
    is_unseen_class[unseen] = True
    pred = np.argmax(scores - gamma * ~is_unseen_class, axis=1)
    correct = pred == labels
    unseen_sample = is_unseen_class[labels]
    if unseen_sample.all() or not unseen_sample.any():
        raise ActionlmError("GZSL needs samples of seen and of unseen classes")
    seen, unseen_acc = float(correct[~unseen_sample].mean()), float(correct[unseen_sample].mean())
    total = seen + unseen_acc
    return {"seen": seen, "unseen": unseen_acc,
            "harmonic": 2 * seen * unseen_acc / total if total else 0.0, "gamma": gamma}


def choose_calibration(scores: np.ndarray, labels: np.ndarray, unseen: list[int]) -> float:
    """The gamma with the best H on these (validation) scores: every value at which a
    sample's calibrated top-1 changes between its best seen and its best unseen class is a
    candidate (the exact search), ties to the smallest |gamma|."""
    is_unseen_class = np.zeros(scores.shape[1], bool)
    is_unseen_class[unseen] = True
    gaps = scores[:, ~is_unseen_class].max(1) - scores[:, is_unseen_class].max(1)
    edges = np.unique(gaps)
    candidates = np.concatenate([[0.0], (edges[:-1] + edges[1:]) / 2, edges[:1] - 1,
                                 edges[-1:] + 1])
    candidates = candidates[np.argsort(np.abs(candidates), kind="stable")]
    best = max(candidates, key=lambda g: gzsl_accuracy(scores, labels, unseen, g)["harmonic"])
    return float(best)


def validation_gamma(metrics: Path) -> float:
    """The gamma a validation protocol's evaluation chose (its ``gzsl.validation_gamma``)."""
    try:
        return float(json.loads(Path(metrics).read_text())["gzsl"]["validation_gamma"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ActionlmError(f"{metrics}: no gzsl.validation_gamma (the metrics.json of an "
                            f"evaluation on a validation protocol, P{VALIDATION}) ({err})"
                            ) from None


def gzsl_metrics(scores: np.ndarray, labels: np.ndarray, unseen: list[int], protocol: str,
                 calibrate_on: Path | None) -> dict:
    """metrics.json's ``gzsl``: uncalibrated; calibrated with the gamma of the validation
    metrics ``calibrate_on`` (when given); on a validation protocol, the gamma it chooses."""
    out = gzsl_accuracy(scores, labels, unseen)
    if calibrate_on is not None:
        out["calibrated"] = {**gzsl_accuracy(scores, labels, unseen,
                                             validation_gamma(calibrate_on)),
                             "chosen_on": str(calibrate_on)}
    if protocol.endswith(VALIDATION):
        out["validation_gamma"] = choose_calibration(scores, labels, unseen)
    return out


def evaluate_text_similarity(model_path: Path, files: SplitFiles, classes: Path, texts: Path,
                             out_dir: Path, *, class_texts: str, calibrate_on: Path | None,
                             interval: float, device: torch.device, batch_size: int,
                             precision: str) -> dict:
    """ZSL (metrics.json, predictions.parquet) and, when the split has ``test_seen``, GZSL
    (metrics.json ``gzsl``) of a GAP or SUGAR encoder."""
    autocast_dtype(device, precision)
    model = load_encoder(model_path, device)
    if model.cfg.method not in ("gap", "sugar"):
        raise ActionlmError(f"{model_path}: a {model.cfg.method} encoder has no language head "
                            "(text similarity needs a GAP or SUGAR encoder)")
    names = read_class_names(classes)
    vectors = class_vectors(texts, len(names), head_kinds(model_path, class_texts))
    unseen = unseen_labels(files.split)
    scores, labels, ids = language_scores(model, files, ("test", "test_seen"), vectors,
                                          interval, device, batch_size, precision)
    zsl = np.isin(labels, unseen)
    position = {c: i for i, c in enumerate(unseen)}
    metadata = {"method": f"{model.cfg.method}_textsim", "protocol": files.protocol,
                "model": str(model_path), "texts": str(texts), "class_texts": class_texts,
                "zero_shot": True, "unseen_labels": unseen}
    if not zsl.all():
        metadata["gzsl"] = gzsl_metrics(scores, labels, unseen, files.protocol, calibrate_on)
    metrics = write_evaluation(out_dir, scores[zsl][:, unseen],
                               np.array([position[int(y)] for y in labels[zsl]]),
                               [i for i, z in zip(ids, zsl) if z], [names[c] for c in unseen],
                               None, metadata)
    log.info("%s text similarity (%s) on %s: ZSL top-1 %.2f%%, top-5 %.2f%% (n=%d)%s",
             model.cfg.method, class_texts, files.protocol, 100 * metrics["top1"],
             100 * metrics["top5"], metrics["n"],
             "" if "gzsl" not in metadata else
             ", GZSL S {seen:.2%} U {unseen:.2%} H {harmonic:.2%}".format(**metadata["gzsl"]))
    return metrics
