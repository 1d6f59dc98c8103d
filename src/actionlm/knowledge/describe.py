"""Describe every action class with a language model: six body parts, synonyms, a paragraph
(GAP), and one motion description (SUGAR).

GAP (Xiang et al., ICCV 2023, Sec. 3.2 and Fig. 5) asks a language model three questions per
class; its answers become the text targets of the multi-part contrastive loss. SUGAR (Ye et
al., AAAI 2026, "Generate Motion Knowledge") asks one question per class with its own example
("drink water") and keeps the answer whole: the motion description m of its MIL-NCE positives
(kind ``motion``); then, from that answer, a one-sentence ``brief`` description, the "class:
brief description" its recognizer answers with (SUGAR "Training Strategy"). The questions
and one in-context example per kind (SUGAR's way of fixing the answer format) come from a
prompts file that users edit (configs/prompts/describe.yaml). Every request goes through the
cached client (actionlm.knowledge.client): a rerun sends nothing, an interrupted run resumes.
Body parts that an answer leaves out are asked one at a time (the file's ``follow_up``), so
every class gets all six. ``--serve-model-dir`` starts the local batching server
(actionlm.knowledge.batch_server) on a prepared model folder for the run; ``--import-gap DIR``
reads GAP's released text files instead of asking any model.

Output (descriptions.parquet), one row per text: class_id (the dataset's label), class_name,
kind (part / synonym / paragraph / motion / brief), part (head, hand, arm, hip, leg, foot;
null unless kind is part), text, source (provider/model, or gap-import), request_hash (cache key
of the answer; null for imports). Metadata: the prompts file's path, version and sha256, the
source, the call counts (cache hits, requests, retries, bad answers) and the number of part
follow-ups.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import statistics
import unicodedata
from pathlib import Path

import pyarrow as pa
import yaml

from actionlm.cli_args import positive_int
from actionlm.config import config_errors
from actionlm.data.classes import read_class_rows
from actionlm.data.skeleton_layouts import BODY_PARTS
from actionlm.errors import ActionlmError, InputError
from actionlm.io import with_metadata, write_parquet
from actionlm.knowledge.client import (
    Answer,
    ChatRequest,
    InvalidAnswer,
    LLMClient,
    LLMRequestError,
    Provider,
    add_client_arguments,
    client_from_args,
)

log = logging.getLogger(__name__)

KINDS = ("part", "synonym", "paragraph", "motion")  # "visual" rows come from describe-visual
BRIEF = "brief"  # asked after KINDS: its question holds the class's motion description
DEFAULT_PROMPTS = Path("configs/prompts/describe.yaml")
GAP_SOURCE = "gap-import"
FALLBACK_SOURCE = "fallback/label-name"
# Sampling, so that temperature and the per-retry seed matter (a retry after a bad answer must
# be able to differ): transformers serve's field, which the local server accepts; part of the
# cache keys, so answers cached from either server are reused.
SERVE_SAMPLING = {"generation_config": json.dumps({"do_sample": True})}

DESCRIPTIONS_SCHEMA = pa.schema(
    [
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("part", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("request_hash", pa.string()),
    ]
)

_SAMPLING_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": "integer"},
        "max_tokens": {"type": "integer", "minimum": 1},
    },
}
_KIND_SCHEMA = {
    "type": "object",
    "required": ["question", "example"],
    "properties": {
        **_SAMPLING_SCHEMA["properties"],
        "question": {"type": "string", "pattern": r"\{action\}"},
        "example": {
            "type": "object",
            "additionalProperties": False,
            "required": ["action", "answer"],
            "properties": {"action": {"type": "string", "minLength": 1},
                           "motion": {"type": "string", "minLength": 1},
                           "answer": {"type": "string", "minLength": 1}},
        },
        "keep": {"type": "integer", "minimum": 1},
        "min_count": {"type": "integer", "minimum": 1},
        "min_words": {"type": "integer", "minimum": 1},
        "max_words": {"type": "integer", "minimum": 1},
        "min_parts": {"type": "integer", "minimum": 1, "maximum": len(BODY_PARTS)},
        "follow_up": {"type": "string", "allOf": [{"pattern": r"\{action\}"},
                                                   {"pattern": r"\{part\}"}]},
        "follow_up_max_tokens": {"type": "integer", "minimum": 1},
        "truncated": {"enum": ["refuse", "trim"]},
    },
    "additionalProperties": False,
}
PROMPTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "kinds"],
    "properties": {
        "version": {"type": ["integer", "string"]},
        "system": {"type": "string"},
        "sampling": _SAMPLING_SCHEMA,
        "kinds": {
            "type": "object",
            "additionalProperties": False,
            "required": [*KINDS, BRIEF],
            "properties": {kind: _KIND_SCHEMA for kind in (*KINDS, BRIEF)},
        },
    },
}


# ---------------------------------------------------------------- prompts


@dataclasses.dataclass(frozen=True)
class Prompts:
    """The prompts file, validated; ``sha256`` identifies the exact text used."""

    path: str
    version: int | str
    sha256: str
    system: str
    sampling: dict
    kinds: dict

    @classmethod
    def load(cls, path: str | os.PathLike) -> Prompts:
        try:
            raw = Path(path).read_bytes()
            spec = yaml.safe_load(raw)
        except OSError as err:
            raise ActionlmError(f"{path}: cannot read the prompts file ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise ActionlmError(f"{path}: not valid YAML ({err})") from None
        problems = config_errors(spec if isinstance(spec, dict) else {}, PROMPTS_SCHEMA)
        if problems:
            raise ActionlmError(f"{path}: " + "; ".join(problems))
        part = spec["kinds"]["part"]
        if part.get("min_parts", len(BODY_PARTS)) < len(BODY_PARTS) and "follow_up" not in part:
            raise ActionlmError(f"{path}: kinds.part.follow_up: needed when min_parts < 6 "
                                "(it asks for the parts an answer left out)")
        try:
            parse_parts(part["example"]["answer"], {"example": {"answer": ""}})  # all six
        except InvalidAnswer as err:
            raise ActionlmError(f"{path}: kinds.part.example.answer: {err}") from None
        return cls(str(path), spec["version"], hashlib.sha256(raw).hexdigest(),
                   spec.get("system", ""), spec.get("sampling", {}), spec["kinds"])

    def request(self, kind: str, class_name: str) -> ChatRequest:
        """GAP's question about ``class_name``, after the kind's worked example."""
        spec = self.kinds[kind]
        return ChatRequest(
            messages=self._messages(_question(spec, spec["example"]["action"]),
                                    spec["example"]["answer"], _question(spec, class_name)),
            label=f"class {class_name!r} ({kind})",
            validator=functools.partial(PARSERS[kind], spec=spec, class_name=class_name),
            trim_truncated=_trimmer(spec, kind), **self._sampling(spec))

    def brief(self, class_name: str, motion: str) -> ChatRequest:
        """SUGAR's one-sentence description of ``class_name`` from its ``motion`` answer."""
        spec = self.kinds[BRIEF]
        example = spec["example"]
        return ChatRequest(
            messages=self._messages(
                _question(spec, example["action"], motion=example.get("motion", "")),
                example["answer"], _question(spec, class_name, motion=motion)),
            label=f"class {class_name!r} ({BRIEF})",
            validator=functools.partial(parse_brief, spec=spec),
            trim_truncated=_trimmer(spec, BRIEF), **self._sampling(spec))

    def follow_up(self, class_name: str, part: str) -> ChatRequest:
        """The question for one part that the answer to :meth:`request` left out; its worked
        example is that part's phrase in the kind's example answer."""
        spec = self.kinds["part"]
        example = parse_parts(spec["example"]["answer"], {"example": {"answer": ""}})[part]
        sampling = self._sampling(spec)
        sampling["max_tokens"] = spec.get("follow_up_max_tokens", sampling.get("max_tokens", 32))
        return ChatRequest(
            messages=self._messages(
                _question(spec, spec["example"]["action"], part, "follow_up"), example,
                _question(spec, class_name, part, "follow_up")),
            label=f"class {class_name!r} ({part})",
            validator=functools.partial(parse_one_part, part=part),
            trim_truncated=_trimmer(spec, "part"), **sampling)

    def _messages(self, example_question: str, example_answer: str, question: str) -> tuple:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return (*system, {"role": "user", "content": example_question},
                {"role": "assistant", "content": example_answer},
                {"role": "user", "content": question})

    def _sampling(self, spec: dict) -> dict:
        """The file's sampling values, overridden by the kind's own."""
        return {**self.sampling, **{k: spec[k] for k in _SAMPLING_SCHEMA["properties"]
                                    if k in spec}}


# Where the complete part of an answer cut at max_tokens ends, per kind.
COMPLETE_UP_TO = {"part": r"[;\n]", "synonym": r"[,;\n]", "paragraph": r"[.!?](?=\s|$)",
                  "motion": r"[;\n]", BRIEF: r"[.!?](?=\s|$)"}


def keep_complete(text: str, end: str) -> str:
    """``text`` up to its last complete piece (the last match of ``end``); "" if none."""
    ends = [match.end() for match in re.finditer(end, text)]
    return text[: ends[-1]].rstrip(";,\n ") if ends else ""


def _trimmer(spec: dict, kind: str):
    """The kind's ``truncated: trim`` keeps the complete part of a cut answer; ``refuse``
    (the default) asks again."""
    if spec.get("truncated", "refuse") == "refuse":
        return None
    return functools.partial(keep_complete, end=COMPLETE_UP_TO[kind])


def _question(spec: dict, action: str, part: str = "", template: str = "question",
              motion: str = "") -> str:
    # replace, not str.format: class names and questions may hold braces; the class name
    # goes in last, so that braces in it stay as they are
    text = spec[template].replace("{part}", part).replace("{motion}", motion)
    return text.replace("{action}", " ".join(action.split()))


# ---------------------------------------------------------------- answer parsing

_PART_WORDS = {"head": "head", "heads": "head", "hand": "hand", "hands": "hand", "arm": "arm",
               "arms": "arm", "hip": "hip", "hips": "hip", "leg": "leg", "legs": "leg",
               "foot": "foot", "feet": "foot"}
_PART_WORD = r"(?:heads?|hands?|arms?|hips?|legs?|foot|feet)"
_PART_START = re.compile(
    rf"^((?:(?:the|his|her|their|both|left|right|one|each)\s+)*({_PART_WORD}))\b\s*[:\-–—]?\s*",
    re.IGNORECASE)
# Parts are separated by ";" (GAP's format), by lines, or by a sentence end or a comma before
# the next part's name ("Head tilts. Hands reach down, arms extend").
_PART_SPLIT = re.compile(
    rf"[;\n]+|(?:(?<=[.!])\s+|,\s*(?:and\s+)?)(?=(?:the\s+|his\s+|her\s+)?{_PART_WORD}\b)",
    re.IGNORECASE)
_LIST_MARK = re.compile(r"^\s*(?:[-*•·+]+|\(?\d{1,2}[.):]|\(?[a-f]\))\s+")
_MARKUP = re.compile(r"[*_`#]+")
_QUOTES = "\"'“”‘’«»"


def _clean(segment: str) -> str:
    """Drop list bullets/numbers and markdown emphasis; collapse whitespace."""
    segment = _MARKUP.sub("", _LIST_MARK.sub("", segment.strip()))
    return " ".join(segment.split())


def _is_example_copy(text: str, spec: dict) -> bool:
    return _norm(text) == _norm(spec["example"]["answer"])


def parse_parts(text: str, spec: dict, class_name: str = "") -> dict[str, str]:
    """Part descriptions from "head tilts ...; hand ..." in any of the shapes small models
    write (numbered, bulleted, "Head: ..." lines, sentences, comma lists). Raises InvalidAnswer
    naming the missing parts when fewer than ``min_parts`` (default: all six) are found; the
    stage asks for the others one by one (:meth:`Prompts.follow_up`), so no class is ever
    stored with fewer than six."""
    if _is_example_copy(text, spec):
        raise InvalidAnswer("repeats the in-context example")
    found: dict[str, str] = {}
    for segment in _PART_SPLIT.split(text):
        segment = _clean(segment)
        match = _PART_START.match(segment)
        rest = segment[match.end():].strip(" .;,") if match else ""
        if not rest:
            continue  # an introduction, a heading, or a part named without a description
        part = _PART_WORDS[match.group(2).lower()]
        description = f"{match.group(1)} {rest}"
        if part not in found:
            found[part] = description
        elif _norm(description) not in _norm(found[part]):
            found[part] += f"; {description}"
    missing = [part for part in BODY_PARTS if part not in found]
    if len(found) < spec.get("min_parts", len(BODY_PARTS)):
        raise InvalidAnswer(f"no description of {', '.join(missing)}")
    return {part: found[part] for part in BODY_PARTS if part in found}


def parse_one_part(text: str, part: str) -> str:
    """The answer to a follow-up: its first phrase, which must be about ``part``: naming it
    first ("hip remains stationary") or at least naming it ("The position of the hips is
    fixed"). Small models often answer about something else; that is refused, asked again."""
    segment = next((_clean(s) for s in _PART_SPLIT.split(text) if _clean(s)), "")
    segment = re.split(r"(?<=[.!?])\s+", segment)[0].strip(" .;,")
    match = _PART_START.match(segment)
    if match is None:
        if not any(_PART_WORDS.get(word) == part for word in re.findall(r"\w+", segment.lower())):
            raise InvalidAnswer(f"does not mention the {part}")
        return segment
    if _PART_WORDS[match.group(2).lower()] != part:
        raise InvalidAnswer(f"describes the {match.group(2).lower()}, not the {part}")
    rest = segment[match.end():].strip(" .;,")
    if not rest:
        raise InvalidAnswer(f"no description of {part}")
    return f"{match.group(1)} {rest}"


def parse_synonyms(text: str, spec: dict, class_name: str = "") -> list[str]:
    """Distinct short phrases from a comma/line/numbered list, without introductions, the
    class name itself, or sentences; at least ``min_count`` of them, at most ``keep``."""
    if _is_example_copy(text, spec):
        raise InvalidAnswer("repeats the in-context example")
    seen, synonyms = {_norm(class_name)}, []
    for line in text.splitlines():
        if line.rstrip().endswith(":") or "synonym" in line.lower():
            continue  # "Here are 10 synonyms for ...:"
        for item in re.split(r"[,;]", line):
            item = _clean(item).strip(_QUOTES + " .")
            if not item or len(item.split()) > 6 or _norm(item) in seen:
                continue
            seen.add(_norm(item))
            synonyms.append(item)
    if len(synonyms) < spec.get("min_count", 1):
        raise InvalidAnswer(f"{len(synonyms)} usable synonyms, fewer than "
                            f"min_count={spec.get('min_count', 1)}")
    return synonyms[: spec.get("keep", len(synonyms))]


def parse_paragraph(text: str, spec: dict, class_name: str = "") -> str:
    if _is_example_copy(text, spec):
        raise InvalidAnswer("repeats the in-context example")
    paragraph = " ".join(re.sub(r"^\s*(?:A|Answer)\s*:\s*", "", text).split())
    if len(paragraph.split()) < spec.get("min_words", 1):
        raise InvalidAnswer(f"{len(paragraph.split())} words, fewer than "
                            f"min_words={spec.get('min_words', 1)}")
    return paragraph


def parse_motion(text: str, spec: dict, class_name: str = "") -> str:
    """SUGAR's motion description, one text: the body-part phrases found (at least
    ``min_parts`` of them, in head .. foot order) joined by "; " as in its example."""
    return "; ".join(parse_parts(text, spec, class_name).values())


def parse_brief(text: str, spec: dict, class_name: str = "") -> str:
    """The first sentence of the answer, at most ``max_words`` words (SUGAR's brief
    description)."""
    if _is_example_copy(text, spec):
        raise InvalidAnswer("repeats the in-context example")
    sentence = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))[0].strip()
    words = len(sentence.split())
    if not words or words > spec.get("max_words", words):
        raise InvalidAnswer(f"{words} words, not 1..max_words={spec.get('max_words')}")
    return sentence


PARSERS = {"part": parse_parts, "synonym": parse_synonyms, "paragraph": parse_paragraph,
           "motion": parse_motion}


def _norm(name: str) -> str:
    """Case-, accent- and punctuation-insensitive form, for matching names."""
    letters = "".join(c for c in unicodedata.normalize("NFKD", name.casefold())
                      if not unicodedata.combining(c))
    return " ".join(re.sub(r"[\W_]+", " ", letters).split())


# ---------------------------------------------------------------- the table


def descriptions_table(rows: list[dict], **metadata: object) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=with_metadata(DESCRIPTIONS_SCHEMA, **metadata))


def _row(label: int, name: str, kind: str, part: str | None, text: str, source: str,
         request_hash: str | None) -> dict:
    return {"class_id": label, "class_name": name, "kind": kind, "part": part, "text": text,
            "source": source, "request_hash": request_hash}


def _rows(label: int, name: str, kind: str, value: object, source: str,
          request_hash: str | None) -> list[dict]:
    """Table rows of one complete answer: six parts, the synonyms, or the paragraph."""
    if kind == "part":
        return [_row(label, name, kind, part, value[part], source, request_hash)
                for part in BODY_PARTS]
    texts = value if kind == "synonym" else [value]
    return [_row(label, name, kind, None, text, source, request_hash) for text in texts]


def _questions(classes: list[tuple], prompts: Prompts) -> tuple[list[tuple], list[ChatRequest]]:
    """(label, name, kind) jobs, one per class and kind, and their requests."""
    jobs = [(label, name, kind) for label, name, *_ in classes for kind in KINDS]
    return jobs, [prompts.request(kind, name) for _, name, kind in jobs]


def _parts_left_out(jobs: list[tuple], answers: list[Answer | None],
                    prompts: Prompts) -> list[tuple[int, str]]:
    """(job index, part) to ask separately: parts an answer left out, or all six when the
    part question itself failed (with allow_incomplete); none without a follow-up question."""
    if "follow_up" not in prompts.kinds["part"]:
        return []
    return [(i, part) for i, ((_, _, kind), answer) in enumerate(zip(jobs, answers))
            if kind == "part" for part in BODY_PARTS if answer is None or part not in answer.value]


def _ask(client: LLMClient, requests: list[ChatRequest], progress: str,
         allow_incomplete: bool) -> list[Answer | None]:
    """``client.run``; with ``allow_incomplete``, requests that ran out of attempts give None
    (after a warning naming each) instead of failing the stage."""
    try:
        return client.run(requests, progress=progress)
    except LLMRequestError as err:
        if not allow_incomplete or err.answers is None:
            raise
        log.warning("continuing without these answers (allow_incomplete): %s", err)
        return err.answers


def _briefs(jobs: list[tuple], answers: list[Answer | None],
            prompts: Prompts) -> tuple[list[tuple[int, str]], list[ChatRequest]]:
    """(label, name) of each class and the request for its brief description, made from its
    accepted motion answer (from the class name when there is none)."""
    named = [(label, name, answer) for (label, name, kind), answer in zip(jobs, answers)
             if kind == "motion"]
    return ([(label, name) for label, name, _ in named],
            [prompts.brief(name, answer.value if answer is not None else " ".join(name.split()))
             for _, name, answer in named])


def all_cached(classes: list[tuple], prompts: Prompts, client: LLMClient) -> bool:
    """Whether describing ``classes`` needs no request at all (questions, follow-ups and brief
    descriptions); refused answers count as cached: a rerun judges them again without asking."""
    jobs, requests = _questions(classes, prompts)
    if not client.all_cached(requests):
        return False
    try:
        answers = client.run(requests)  # all from the cache
    except LLMRequestError as err:  # answers refused until no attempt was left
        answers = err.answers
    return client.all_cached([prompts.follow_up(jobs[i][1], part)
                              for i, part in _parts_left_out(jobs, answers, prompts)]
                             + _briefs(jobs, answers, prompts)[1])


def describe_classes(classes: list[tuple], prompts: Prompts, client: LLMClient,
                     allow_incomplete: bool = False) -> pa.Table:
    """Ask every kind's question about every class (through the cache), then one follow-up
    per body part an accepted answer left out and the brief description from each motion
    answer, and tabulate. Rows keep the hash of the request whose answer they come from.

    A request that fails for good fails the stage, unless ``allow_incomplete``: then its rows
    are GAP's label-name baseline (the class name as the text, source ``fallback/label-name``,
    no request hash), listed in the log and in the metadata (``fallbacks``), never silent."""
    jobs, requests = _questions(classes, prompts)
    answers = _ask(client, requests, f"describe ({len(classes)} classes x {len(KINDS)})",
                   allow_incomplete)
    follow_ups = _parts_left_out(jobs, answers, prompts)
    asked: dict[tuple[int, str], Answer | None] = {}
    if follow_ups:
        log.info("asking separately for %d body parts that answers left out", len(follow_ups))
        extra = _ask(client, [prompts.follow_up(jobs[i][1], part) for i, part in follow_ups],
                     "describe (parts asked separately)", allow_incomplete)
        asked = dict(zip(follow_ups, extra))
    source, rows, fallbacks = client.provider.source, [], []
    for i, ((label, name, kind), answer) in enumerate(zip(jobs, answers)):
        if kind != "part" and answer is not None:
            rows += _rows(label, name, kind, answer.value, source, answer.request_hash)
            continue
        for part in BODY_PARTS if kind == "part" else [None]:
            got = asked.get((i, part))
            if got is not None:
                rows.append(_row(label, name, kind, part, got.value, source, got.request_hash))
            elif answer is not None and part in answer.value:
                rows.append(_row(label, name, kind, part, answer.value[part], source,
                                 answer.request_hash))
            else:
                fallbacks.append(f"{name!r} ({part or kind})")
                rows.append(_row(label, name, kind, part, " ".join(name.split()),
                                 FALLBACK_SOURCE, None))
    named, requests = _briefs(jobs, answers, prompts)
    briefs = _ask(client, requests, "describe (brief descriptions)", allow_incomplete)
    for (label, name), answer in zip(named, briefs):
        if answer is None:
            fallbacks.append(f"{name!r} ({BRIEF})")
        rows.append(_row(label, name, BRIEF, None,
                         answer.value if answer else " ".join(name.split()),
                         source if answer else FALLBACK_SOURCE,
                         answer.request_hash if answer else None))
    if fallbacks:
        log.warning("%d texts are the class name (no usable answer): %s", len(fallbacks),
                    ", ".join(fallbacks))
    return descriptions_table(
        rows, prompts={"path": prompts.path, "version": prompts.version, "sha256": prompts.sha256},
        source=source, calls=client.stats.as_dict(), part_follow_ups=len(follow_ups),
        fallbacks=fallbacks)


# ---------------------------------------------------------------- GAP import


def detect_gap_kind(lines: list[str]) -> str | None:
    """Which of GAP's files these lines are, by their content (file names vary):
    ``name;head;hand;arm;hip;leg;foot`` -> part (most lines have six ";");
    ``name,text`` -> paragraph when most lines continue after a sentence end or have long
    comma-separated pieces (prose), else synonym (short phrases). None: not a GAP file."""
    if not lines:
        return None
    if statistics.median(line.count(";") for line in lines) == len(BODY_PARTS):
        return "part"
    if sum("," in line for line in lines) < len(lines) / 2:
        return None
    prose = sum(_is_prose(line.partition(",")[2]) for line in lines)
    return "paragraph" if prose >= len(lines) / 2 else "synonym"


def _is_prose(text: str) -> bool:
    """Sentences follow each other, one piece of 3+ words, or comma pieces averaging 4+ words
    (synonym lists have several pieces of 1-3 words)."""
    pieces = text.split(",")
    words = sum(len(piece.split()) for piece in pieces)
    return (bool(re.search(r"[.!?]\s+\S", text)) or words >= 4 * len(pieces)
            or (len(pieces) == 1 and words >= 3))


def _gap_entries(path: Path, kind: str, lines: list[str]) -> list[tuple[int, str, object]]:
    """(line number, class name, parsed value) of one GAP file."""
    entries = []
    for number, line in enumerate(lines, 1):
        if kind == "part":
            fields = [f.strip().rstrip(".").strip() for f in line.split(";")]
            if len(fields) != len(BODY_PARTS) + 1 or not all(fields):
                raise InputError(f"{path}:{number}", f"expected name;{';'.join(BODY_PARTS)} "
                                 f"(7 non-empty fields), got {len(fields)}")
            entries.append((number, fields[0], dict(zip(BODY_PARTS, fields[1:]))))
            continue
        name, _, rest = line.partition(",")
        if kind == "synonym":
            items = list(dict.fromkeys(s.strip().rstrip(".") for s in rest.split(",") if s.strip()))
            value: object = items
        else:
            value = " ".join(rest.split())
        if not name.strip() or not value:
            raise InputError(f"{path}:{number}", f"expected name,{kind} text")
        entries.append((number, name.strip(), value))
    return entries


def read_gap_dir(folder: str | os.PathLike) -> dict[str, tuple[Path, list]]:
    """kind -> (file, entries) for GAP's text files in ``folder`` (*.txt, detected by content)."""
    found: dict[str, tuple[Path, list]] = {}
    if not Path(folder).is_dir():
        raise ActionlmError(f"{folder}: not a folder")
    for path in sorted(Path(folder).glob("*.txt")):
        text = path.read_text(encoding="utf-8-sig")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        kind = detect_gap_kind(lines)
        if kind is None:
            log.info("%s: not a GAP description file, skipped", path)
            continue
        if kind in found:
            raise ActionlmError(f"{folder}: two {kind} files ({found[kind][0].name}, {path.name}); "
                                "keep one set of GAP files per folder")
        found[kind] = (path, _gap_entries(path, kind, lines))
        log.info("%s: %s descriptions of %d classes", path, kind, len(found[kind][1]))
    if not found:
        raise ActionlmError(f"{folder}: no GAP description files (*.txt with "
                            "name;head;...;foot, name,synonyms or name,paragraph lines)")
    return found


def import_gap(folder: str | os.PathLike, classes: list[tuple], match: str = "name",
               allow_missing: bool = False) -> pa.Table:
    """GAP's released texts as a descriptions table. ``match``: ``name`` pairs a line with the
    class of the same name (case/punctuation-insensitive); ``native-id`` pairs line k with the
    class whose native_id is k (GAP's NTU files list NTU's actions in order, with shortened
    names). A class with no line is an error unless ``allow_missing``."""
    files = read_gap_dir(folder)
    key_of = {"name": lambda label, name, native: _norm(name),
              "native-id": lambda label, name, native: native}[match]
    by_key = {key_of(*cls): cls for cls in classes}
    rows, covered, unused = [], set(), []
    for kind, (path, entries) in files.items():
        for number, name, value in entries:
            cls = by_key.get(_norm(name) if match == "name" else number)
            if cls is None or (cls[0], kind) in covered:  # no such class, or a repeated line
                unused.append(f"{path.name}:{number} {name!r}")
                continue
            covered.add((cls[0], kind))
            rows += _rows(cls[0], cls[1], kind, value, GAP_SOURCE, None)
    described = {label for label, _ in covered}
    unmatched = [name for label, name, _ in classes if label not in described]
    if unused:
        log.info("%d GAP lines match no class of the dataset: %s", len(unused),
                 ", ".join(unused[:20]))
    if unmatched:
        message = (f"{len(unmatched)} classes have no GAP line (--gap-match {match}): "
                   + ", ".join(map(repr, unmatched)))
        if not allow_missing:
            hint = " (try --gap-match native-id for GAP's NTU files)" if match == "name" else ""
            raise ActionlmError(f"{folder}: {message}{hint}; --allow-missing imports the rest")
        log.warning(message)
    rows.sort(key=lambda r: (r["class_id"], KINDS.index(r["kind"])))
    return descriptions_table(
        rows, source=GAP_SOURCE,
        gap_import={"folder": str(folder), "match": match, "unmatched_classes": unmatched,
                    "unused_lines": len(unused),
                    "files": {kind: path.name for kind, (path, _) in files.items()}})


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", required=True, type=Path,
                        help="the dataset's classes.parquet (label, class_name, native_id)")
    parser.add_argument("--out", required=True, type=Path, help="descriptions.parquet to write")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS,
                        help="prompts file (questions, in-context examples, sampling)")
    add_client_arguments(parser, default_model="gpt-4o-mini")
    parser.add_argument("--allow-incomplete", action=argparse.BooleanOptionalAction, default=False,
                        help="a request that fails for good gives the class name as its text "
                        "(source fallback/label-name, logged, listed in the metadata) instead of "
                        "failing the stage: for small local models")
    parser.add_argument("--serve-model-dir", type=Path,
                        help="start the local batching server on this prepared model folder for "
                        "the run and ask it (no API key needed); excludes --base-url")
    parser.add_argument("--serve-device", default="auto", help="device of the served model")
    parser.add_argument("--serve-log", type=Path, help="append the server's output here")
    parser.add_argument("--serve-threads", type=positive_int, default=None,
                        help="CPU threads of the served model (default: torch's)")
    gap = parser.add_argument_group("import GAP's released descriptions instead of asking")
    gap.add_argument("--import-gap", type=Path, metavar="DIR",
                     help="folder of GAP's text files: parts, synonyms, paragraphs (told apart "
                     "by content)")
    gap.add_argument("--gap-match", choices=("name", "native-id"), default="name",
                     help="pair GAP lines with classes by name, or line k with native_id k")
    gap.add_argument("--allow-missing", action=argparse.BooleanOptionalAction, default=False,
                     help="import even when some classes have no GAP line (they are logged)")


def describe_with_served_model(classes: list[tuple], prompts: Prompts,
                               args: argparse.Namespace) -> pa.Table:
    """Start the local server only when the cache lacks an answer (model name and sampling,
    which make the cache key, are known before it runs; its port is not part of the key)."""
    from actionlm.knowledge.serve import serve_model, served_model_name

    provider = Provider(served_model_name(args.serve_model_dir), api_key_env=None,
                        name="local-server", extra_body=SERVE_SAMPLING)
    if all_cached(classes, prompts, client_from_args(args, provider)):
        return describe_classes(classes, prompts, client_from_args(args, provider),
                                args.allow_incomplete)
    with serve_model(args.serve_model_dir, device=args.serve_device,
                     log_path=args.serve_log, threads=args.serve_threads) as base_url:
        provider = dataclasses.replace(provider, base_url=base_url)
        return describe_classes(classes, prompts, client_from_args(args, provider),
                                args.allow_incomplete)


def run(args: argparse.Namespace) -> None:
    classes = read_class_rows(args.classes)
    if args.import_gap:
        table = import_gap(args.import_gap, classes, args.gap_match, args.allow_missing)
    elif args.serve_model_dir:
        if args.base_url:
            raise ActionlmError("--serve-model-dir and --base-url exclude each other")
        table = describe_with_served_model(classes, Prompts.load(args.prompts), args)
    else:
        table = describe_classes(classes, Prompts.load(args.prompts), client_from_args(args),
                                 args.allow_incomplete)
    write_parquet(table, args.out)
    log.info("wrote %s: %d texts for %d classes", args.out, table.num_rows, len(classes))
