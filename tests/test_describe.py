"""`actionlm describe`: prompts, answer parsing, the descriptions table, faults, GAP import."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actionlm.cli import main
from actionlm.data.classes import read_class_rows
from actionlm.data.skeleton_layouts import BODY_PARTS
from actionlm.errors import ActionlmError, InputError
from actionlm.io import table_metadata
from actionlm.knowledge import describe
from actionlm.knowledge.client import InvalidAnswer, LLMClient, Provider
from actionlm.knowledge.describe import (
    Prompts,
    import_gap,
    parse_brief,
    parse_motion,
    parse_paragraph,
    parse_parts,
    parse_synonyms,
)
from fake_openai import FakeOpenAI, Reply, last_user_text

REPO = Path(__file__).resolve().parents[1]
PROMPTS = REPO / "configs/prompts/describe.yaml"
KEY_ENV = "ACTIONLM_DESCRIBE_TEST_KEY"
KEY = "sk-describe-test-SECRET-4242"
ODD_NAMES = ['say "hi"', "wave\nhands", "jump – ünïcödé 跳"]

PART_ANSWER = ("head tilts forward; hand grips the {x}; arm lifts; hip stays still; leg bends at "
               "the knee; foot stays flat.")


# What the brief question says between the quoted action and the motion text.
BRIEF_TAIL = Prompts.load(PROMPTS).kinds["brief"]["question"].split('"{action}"')[1].split(
    "{motion}")[0]
BRIEF_START = "In one short sentence"


def action_of(question: str) -> str:
    """The class name in a question: between the first and the last double quote (names hold
    quotes too), before the motion text that the brief question has after the name."""
    head = question.split(BRIEF_TAIL, 1)[0] if question.startswith(BRIEF_START) else question
    return head.split('"', 1)[1].rsplit('"', 1)[0]


def motion_of(question: str) -> str:
    """The motion text that the brief question holds."""
    assert question.startswith(BRIEF_START), question
    return question.split(BRIEF_TAIL, 1)[1]


def brief_of(name: str, motion: str) -> str:
    """The brief description that `gap_style` answers (its first sentence; the second is
    left out)."""
    return f"A person does {' '.join(name.split())}, {motion.split(';')[0].strip()}."


def gap_style(body: dict) -> str:
    """What a well-behaved model answers to each question (the same six parts to the part
    question and to SUGAR's motion question; two sentences to the brief question, the first
    made from the motion text it was given)."""
    question = last_user_text(body)
    action = action_of(question)
    if question.startswith(BRIEF_START):
        return f"{brief_of(action, motion_of(question))} Then the person rests a moment."
    if question.startswith("Describing following body part action"):  # a follow-up
        return f"{question.rsplit(': ', 1)[1].rstrip('.')} follows {action}"
    if question.startswith("Describing"):
        return PART_ANSWER.format(x=action)
    if question.startswith("Suggest"):
        return f"1. {action} again\n2. do {action}\n3. perform it\n4. carry it out"
    return f"A person does {action} slowly and carefully, then stops."


@pytest.fixture
def classes_file(tmp_path):
    path = tmp_path / "classes.parquet"
    pq.write_table(pa.table({"label": pa.array([0, 1, 2, 3], pa.int16()),
                             "class_name": ["drink water", *ODD_NAMES],
                             "native_id": pa.array([1, 7, 9, 12], pa.int16())}), path)
    return path


@pytest.fixture
def spec():
    return Prompts.load(PROMPTS).kinds


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "answer",
    [
        "head tilts; hand grips cup; arm lifts cup; hip stays; leg stays; foot stays.",
        "Sure! Here you go:\n1. Head: tilts\n2. Hand: grips cup\n3. Arm: lifts cup\n"
        "4. Hip: stays\n5. Leg: stays\n6. Foot: stays",
        "- **Head** - tilts\n- **Hands**: grip cup\n- **Arms**: lift cup\n* Hips: stay\n"
        "* Legs: stay\n* Feet: stay",
        "The head tilts. The hand grips cup. His arm lifts cup. Hip stays. Legs stay. Feet stay.",
    ],
    ids=["gap", "numbered", "bullets", "sentences"],
)
def test_parts_parse_from_the_shapes_small_models_write(answer, spec):
    parts = parse_parts(answer, spec["part"])
    assert list(parts) == list(BODY_PARTS)
    assert "grip" in parts["hand"] and "cup" in parts["arm"]
    assert all(text.split()[-1].rstrip(".").startswith(("tilt", "stay", "cup")) for text in parts.values())


def test_parts_of_one_body_part_said_twice_are_joined(spec):
    parts = parse_parts("head nods; left hand holds cup; right hand waves; arm bends; "
                        "hip turns; leg steps; foot taps", spec["part"])
    assert parts["hand"] == "left hand holds cup; right hand waves"


@pytest.mark.parametrize(
    "answer, missing",
    [
        ("head tilts; hand grips; arm lifts; leg bends", "hip, foot"),
        ("head tilts; hand grips; arm lifts; hip:; leg bends; foot:", "hip, foot"),
        ("I cannot describe this action.", "head, hand, arm, hip, leg, foot"),
    ],
)
def test_answers_without_six_parts_are_refused_in_the_strict_form(answer, missing, spec):
    with pytest.raises(InvalidAnswer, match=f"no description of {missing}$"):
        parse_parts(answer, {**spec["part"], "min_parts": 6})


def test_min_parts_accepts_a_partial_answer_that_follow_ups_complete(spec):
    lenient = {**spec["part"], "min_parts": 4}
    assert list(parse_parts("head tilts; hand grips; arm lifts; leg bends", lenient)) == [
        "head", "hand", "arm", "leg"]
    with pytest.raises(InvalidAnswer, match="no description of arm, hip, leg, foot"):
        parse_parts("head tilts; hand grips", lenient)


def test_motion_is_one_text_of_the_parts_in_sugars_format(spec):
    answer = "1. Foot: stays flat\n2. Head: tilts back\n3. Hands: grasp the cup\n4. Arm: lifts it"
    assert parse_motion(answer, spec["motion"]) == (
        "Head tilts back; Hands grasp the cup; Arm lifts it; Foot stays flat")
    assert spec["motion"]["min_parts"] == 4
    with pytest.raises(InvalidAnswer, match="no description of hip, leg, foot$"):
        parse_motion("head tilts back; hand grasps cup; arm lifts cup", spec["motion"])


@pytest.mark.parametrize(
    "answer, expected",
    [("hip remains stationary.", "hip remains stationary"),
     ("The hips sway\nleg: bends", "The hips sway"),
     ("- **Hip**: turns left", "Hip turns left"),
     ("The position of the hips is fixed. Sitting is typical.", "The position of the hips is fixed")],
)
def test_follow_up_answer_is_one_phrase_about_the_part(answer, expected):
    assert describe.parse_one_part(answer, "hip") == expected


def test_follow_up_answer_about_something_else_is_refused():
    with pytest.raises(InvalidAnswer, match="describes the leg, not the hip"):
        describe.parse_one_part("leg bends; hip stays", "hip")
    with pytest.raises(InvalidAnswer, match="no description of hip"):
        describe.parse_one_part("Hip:", "hip")
    for unrelated in ("stays still", "The user will describe the action of sitting down."):
        with pytest.raises(InvalidAnswer, match="does not mention the hip"):
            describe.parse_one_part(unrelated, "hip")


def test_a_copy_of_the_in_context_example_is_refused(spec):
    for kind, parser in (("part", parse_parts), ("synonym", parse_synonyms),
                         ("paragraph", parse_paragraph), ("motion", parse_motion),
                         ("brief", parse_brief)):
        with pytest.raises(InvalidAnswer, match="in-context example"):
            parser(spec[kind]["example"]["answer"].upper(), spec[kind])


def test_synonyms_drop_introductions_numbering_duplicates_and_the_name(spec):
    answer = ('Here are 10 synonyms for "drink water":\n1. "Sip"\n2. guzzle, gulp.\n'
              "3. sip\n4. drink water\n- **swig**\n5. a very long sentence that is not one synonym")
    assert parse_synonyms(answer, spec["synonym"], "Drink water") == ["Sip", "guzzle", "gulp", "swig"]
    with pytest.raises(InvalidAnswer, match="2 usable synonyms"):
        parse_synonyms("sip, sip, gulp", spec["synonym"], "drink")
    many = ", ".join(f"word{i}" for i in range(30))
    assert len(parse_synonyms(many, spec["synonym"])) == spec["synonym"]["keep"]


def test_paragraph_is_one_line_of_enough_words(spec):
    assert parse_paragraph("A: The man\n  lifts a cup to his mouth and drinks.", spec["paragraph"]) \
        == "The man lifts a cup to his mouth and drinks."
    with pytest.raises(InvalidAnswer, match="3 words"):
        parse_paragraph("He drinks water.", spec["paragraph"])


def test_brief_is_the_first_sentence_of_at_most_max_words(spec):
    brief = spec["brief"]
    assert brief["max_words"] == 20
    assert parse_brief("The person raises a hand and waves it.  Then the person smiles and "
                       "walks away, waving at everyone in the room again and again.", brief) \
        == "The person raises a hand and waves it."
    assert parse_brief("The person\n  raises a hand", brief) == "The person raises a hand"
    twenty = " ".join(["step"] * 20) + "."
    assert parse_brief(f"{twenty} Short.", brief) == twenty
    for long in (" ".join(["step"] * 21) + ".", " ".join(["step"] * 21) + ". Short."):
        with pytest.raises(InvalidAnswer, match="21 words"):
            parse_brief(long, brief)
    with pytest.raises(InvalidAnswer, match="0 words"):
        parse_brief("  ", brief)
    with pytest.raises(InvalidAnswer, match="in-context example"):
        parse_brief(f"  {brief['example']['answer'].upper()} ", brief)


@pytest.mark.parametrize(
    "kind, cut, kept",
    [("paragraph", "He sits. He leans back. Then he", "He sits. He leans back."),
     ("paragraph", "He sits on a chair with a", ""),
     ("synonym", "perch, settle, take a se", "perch, settle"),
     ("part", "head nods; hand waves; arm ri", "head nods; hand waves"),
     ("motion", "head tilts back; hand grasps cup; arm li", "head tilts back; hand grasps cup"),
     ("brief", "The person waves. Then the person tu", "The person waves.")],
)
def test_cut_answers_keep_their_complete_part(kind, cut, kept):
    assert describe.keep_complete(cut, describe.COMPLETE_UP_TO[kind]) == kept


# ---------------------------------------------------------------- prompts


def test_requests_carry_the_in_context_example_and_the_class_name(spec):
    prompts = Prompts.load(PROMPTS)
    request = prompts.request("part", 'wave\nhands "now" {x}')
    roles = [m["role"] for m in request.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert request.messages[2]["content"] == spec["part"]["example"]["answer"]
    assert '"put on a shoe"' in request.messages[1]["content"]
    assert '"wave hands "now" {x}": head, hand, arm, hip, leg, foot.' in request.messages[3]["content"]
    assert request.max_tokens == prompts.sampling["max_tokens"]
    assert prompts.request("synonym", "x").max_tokens == spec["synonym"]["max_tokens"]


def test_motion_is_asked_with_sugars_question_and_example(spec):
    question = 'Describing following body part movements when "{}": head, hand, arm, hip, leg, foot.'
    assert spec["motion"]["example"]["action"] == "drink water"
    messages = Prompts.load(PROMPTS).request("motion", "wave hands").messages
    assert [m["content"] for m in messages[1:]] == [
        question.format("drink water"), spec["motion"]["example"]["answer"],
        question.format("wave hands")]


def test_brief_is_asked_with_its_example_and_the_motion_text(spec):
    question = ('In one short sentence, describe how a person does "{}", from these body '
                "movements: {}")
    example = spec["brief"]["example"]
    # the example's motion text is the motion example's answer as the stage stores it
    assert example["motion"] == spec["motion"]["example"]["answer"].rstrip(".")
    request = Prompts.load(PROMPTS).brief('say\n"hi" {x}', "head nods; hand waves")
    assert [m["content"] for m in request.messages[1:]] == [
        question.format("drink water", example["motion"]), example["answer"],
        question.format('say "hi" {x}', "head nods; hand waves")]
    assert request.max_tokens == spec["brief"]["max_tokens"]


def test_editing_a_prompt_changes_only_the_keys_it_touches(tmp_path):
    edited = tmp_path / "prompts.yaml"
    edited.write_text(PROMPTS.read_text().replace("Suggest 10 synonyms", "Suggest ten synonyms"))
    old, new = Prompts.load(PROMPTS), Prompts.load(edited)
    assert old.sha256 != new.sha256
    for kind in describe.KINDS:
        same = old.request(kind, "x").request_hash("m") == new.request(kind, "x").request_hash("m")
        assert same == (kind != "synonym")


@pytest.mark.parametrize(
    "edit, key",
    [
        (('when "{action}"', "when it happens"), "kinds.part.question"),
        (("min_words: 8", "min_words: 8\n    colour: blue"), "kinds.paragraph.colour"),
        (("version: 2", "versio: 2"), "versio"),
        (("    follow_up: '", "    follow_ups: '"), "kinds.part.follow_ups"),
        (("follow_up: 'Describing", "nothing: 'Describing"), "kinds.part.nothing"),
        (("foot inserts into shoe.", "toe inserts into shoe."), "kinds.part.example.answer"),
    ],
)
def test_a_broken_prompts_file_names_the_key(tmp_path, edit, key):
    broken = tmp_path / "prompts.yaml"
    broken.write_text(PROMPTS.read_text().replace(*edit, 1))
    with pytest.raises(ActionlmError, match=f"{broken}: .*{key}"):
        Prompts.load(broken)


# ---------------------------------------------------------------- the stage


def run_stage(args: list[str]) -> int:
    verbose = [a for a in args if a == "-v"]
    return main([*verbose, "describe", *[a for a in args if a != "-v"]])


def stage_args(classes_file, out, cache, server, model="fake-model") -> list[str]:
    return ["--classes", str(classes_file), "--out", str(out), "--cache-dir", str(cache),
            "--prompts", str(PROMPTS), "--model", model, "--base-url", server.base_url,
            "--api-key-env", KEY_ENV, "--max-retries", "2"]


def test_describe_writes_gap_rows_and_reruns_from_cache(classes_file, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache = tmp_path / "descriptions.parquet", tmp_path / "cache"
    with FakeOpenAI(gap_style) as server:
        assert run_stage(stage_args(classes_file, out, cache, server)) == 0
        assert len(server.requests) == 4 * 5  # part, synonym, paragraph, motion, brief
        table = pq.read_table(out)
        assert table.schema.equals(describe.DESCRIPTIONS_SCHEMA, check_metadata=False)
        rows = table.to_pylist()
        for label, name in enumerate(["drink water", *ODD_NAMES]):
            mine = [r for r in rows if r["class_id"] == label]
            assert {r["class_name"] for r in mine} == {name}
            parts = [r for r in mine if r["kind"] == "part"]
            assert [r["part"] for r in parts] == list(BODY_PARTS)
            assert parts[1]["text"] == f"hand grips the {' '.join(name.split())}"
            assert len([r for r in mine if r["kind"] == "synonym"]) == 4
            assert all(r["part"] is None for r in mine if r["kind"] != "part")
            assert len([r for r in mine if r["kind"] == "paragraph"]) == 1
            motion = [r["text"] for r in mine if r["kind"] == "motion"]
            assert motion == ["; ".join(r["text"] for r in parts)]  # one text, all six parts
            brief = [r["text"] for r in mine if r["kind"] == "brief"]
            assert brief == [brief_of(name, motion[0])]  # one sentence, from the motion text
        assert {r["source"] for r in rows} == {"127.0.0.1/fake-model"}
        assert len({r["request_hash"] for r in rows}) == 20
        assert table_metadata(table, "prompts")["sha256"] == Prompts.load(PROMPTS).sha256
        assert table_metadata(table, "calls")["requests"] == 20

        out.unlink()
        assert run_stage(stage_args(classes_file, out, cache, server)) == 0
        assert len(server.requests) == 20
        assert pq.read_table(out).to_pylist() == rows
        assert table_metadata(pq.read_table(out), "calls")["cache_hits"] == 20


def test_wrong_number_of_parts_fails_naming_the_class_and_resumes(classes_file, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache = tmp_path / "descriptions.parquet", tmp_path / "cache"

    def part_question_about_quotes(body):
        return ('say "hi"' in last_user_text(body)
                and last_user_text(body).startswith("Describing following body parts"))

    def two_parts_for_quotes(body):
        if part_question_about_quotes(body):
            return "head nods; hand waves"
        return gap_style(body)

    with FakeOpenAI(two_parts_for_quotes) as server:
        assert run_stage(stage_args(classes_file, out, cache, server)) == 2
        err = capsys.readouterr().err
        assert ("""class 'say "hi"' (part): answer refused: no description of arm, hip, leg, """
                "foot") in err
        assert not out.exists()
        bad = [r for r in server.requests if part_question_about_quotes(r)]
        assert [r["seed"] for r in bad] == [0, 1, 2]  # each retry asks with a new seed
        assert len(list(cache.rglob("*.json"))) == 15 + 3  # refused answers are kept too
        assert not [r for r in server.requests  # nor asked before every question is answered
                    if last_user_text(r).startswith(BRIEF_START)]

        server.responder = gap_style
        sent = len(server.requests)
        assert run_stage(stage_args(classes_file, out, cache, server)) == 2  # same answers
        assert len(server.requests) == sent
        assert run_stage([*stage_args(classes_file, out, cache, server), "--max-retries", "3"]) == 0
        assert [r["seed"] for r in server.requests[sent:]] == [3, 0, 0, 0, 0]  # then 4 briefs
        assert pq.read_table(out).num_rows == 4 * (6 + 4 + 1 + 1 + 1)


def test_parts_left_out_are_asked_one_by_one(classes_file, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache = tmp_path / "descriptions.parquet", tmp_path / "cache"

    def no_hip_no_foot(body):  # to the part question and to SUGAR's motion question
        if last_user_text(body).startswith(("Describing following body parts",
                                             "Describing following body part movements")):
            return "head nods; hand waves; arm rises; leg steps"
        return gap_style(body)

    with FakeOpenAI(no_hip_no_foot) as server:
        assert run_stage(stage_args(classes_file, out, cache, server)) == 0
        assert len(server.requests) == 4 * 5 + 4 * 2  # follow-ups for the part answers only
        rows = pq.read_table(out).to_pylist()
        assert [r["text"] for r in rows if r["kind"] == "motion"] == [
            "head nods; hand waves; arm rises; leg steps"] * 4
        hips = [r for r in rows if r["part"] == "hip"]
        assert [r["text"] for r in hips] == [f"hip follows {' '.join(n.split())}"
                                             for n in ["drink water", *ODD_NAMES]]
        heads = [r for r in rows if r["part"] == "head"]
        assert all(h["request_hash"] != f["request_hash"] for h, f in zip(heads, hips))
        entries = {p.stem for p in cache.rglob("*.json")}
        assert {r["request_hash"] for r in rows} == entries
        assert table_metadata(pq.read_table(out), "part_follow_ups") == 8
        assert run_stage(stage_args(classes_file, out, cache, server)) == 0
        assert len(server.requests) == 28


def test_brief_question_holds_the_accepted_motion_answer(classes_file, tmp_path, monkeypatch):
    """The brief question carries the motion text as stored (the parsed answer, not the raw
    one); a class whose motion question failed (--allow-incomplete) gets its name there."""
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache = tmp_path / "d.parquet", tmp_path / "cache"

    def numbered_motion(body):
        question = last_user_text(body)
        if question.startswith("Describing following body part movements"):
            if action_of(question) == "wave hands":
                return "I cannot describe this action."
            return f"1. Head: nods to {action_of(question)}\n2. Hands: wave\n3. Arms: rise\n4. Legs: step"
        return gap_style(body)

    with FakeOpenAI(numbered_motion) as server:
        assert run_stage([*stage_args(classes_file, out, cache, server), "--allow-incomplete"]) == 0
    rows = pq.read_table(out).to_pylist()
    motions = {r["class_name"]: r["text"] for r in rows if r["kind"] == "motion"}
    assert motions["drink water"] == "Head nods to drink water; Hands wave; Arms rise; Legs step"
    assert motions["wave\nhands"] == "wave hands"  # the fallback
    assert table_metadata(pq.read_table(out), "fallbacks") == ["'wave\\nhands' (motion)"]
    asked = [r for r in server.requests if last_user_text(r).startswith(BRIEF_START)]
    assert len(asked) == 4
    prompts = Prompts.load(PROMPTS)
    for name, motion in motions.items():
        body = next(r for r in asked if action_of(last_user_text(r)) == " ".join(name.split()))
        assert motion_of(last_user_text(body)) == motion
        assert body["messages"] == list(prompts.brief(name, motion).messages)
    briefs = {r["class_name"]: r["text"] for r in rows if r["kind"] == "brief"}
    assert briefs == {name: brief_of(name, motion) for name, motion in motions.items()}


def test_a_described_table_has_one_brief_row_per_class(classes_file, tmp_path, monkeypatch,
                                                       capsys):
    """An answer longer than max_words is refused and asked again; when every attempt is
    refused the stage fails naming the class, or with --allow-incomplete the class's one brief
    row is its name, marked as a fallback."""
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache = tmp_path / "d.parquet", tmp_path / "cache"
    long = " ".join(["jumping"] * 30) + "."

    def rambles_about_jumping(body):
        question = last_user_text(body)
        if question.startswith(BRIEF_START) and action_of(question).startswith("jump"):
            return long
        return gap_style(body)

    with FakeOpenAI(rambles_about_jumping) as server:
        assert run_stage(stage_args(classes_file, out, cache, server)) == 2
        assert "(brief): answer refused: 30 words, not 1..max_words=20" in capsys.readouterr().err
        assert not out.exists()
        assert len(server.requests) == 4 * 5 + 2  # 3 seeds for the refused brief
        assert run_stage([*stage_args(classes_file, out, cache, server), "--allow-incomplete"]) == 0
        assert len(server.requests) == 4 * 5 + 2  # the refusals are cached
    rows = pq.read_table(out).to_pylist()
    briefs = [r for r in rows if r["kind"] == "brief"]
    assert [r["class_id"] for r in briefs] == [0, 1, 2, 3]
    assert all(r["part"] is None for r in briefs)
    jump = briefs[3]
    assert (jump["text"], jump["source"], jump["request_hash"]) == (
        "jump – ünïcödé 跳", "fallback/label-name", None)
    assert all(r["source"] == "127.0.0.1/fake-model" and r["request_hash"] for r in briefs[:3])
    assert table_metadata(pq.read_table(out), "fallbacks") == ["'jump – ünïcödé 跳' (brief)"]


def test_all_cached_waits_for_the_brief_answers(classes_file, tmp_path, monkeypatch):
    """describe.all_cached (whether a served model need not start) is false while any brief
    answer is missing from the cache, even with every other answer cached."""
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache = tmp_path / "d.parquet", tmp_path / "cache"
    classes, prompts = read_class_rows(classes_file), Prompts.load(PROMPTS)
    with FakeOpenAI(gap_style) as server:
        def cached() -> bool:
            client = LLMClient(Provider("fake-model", server.base_url, KEY_ENV), cache,
                               max_retries=2)
            return describe.all_cached(classes, prompts, client)

        assert not cached()
        assert run_stage(stage_args(classes_file, out, cache, server)) == 0
        assert cached()
        sent = len(server.requests)
        briefs = [r for r in pq.read_table(out).to_pylist() if r["kind"] == "brief"]
        for brief in briefs:
            next(cache.rglob(f"{brief['request_hash']}.json")).unlink()
        client = LLMClient(Provider("fake-model", server.base_url, KEY_ENV), cache, max_retries=2)
        assert client.all_cached(describe._questions(classes, prompts)[1])  # the four kinds
        assert not cached()
        assert len(server.requests) == sent  # all_cached sends nothing
        assert run_stage(stage_args(classes_file, out, cache, server)) == 0
        assert len(server.requests) == sent + 4
        assert cached()


@pytest.mark.parametrize("truncated", ["trim", "refuse"])
def test_cut_paragraph_is_trimmed_or_refused_as_the_prompts_say(classes_file, tmp_path,
                                                                 monkeypatch, capsys, truncated):
    monkeypatch.setenv(KEY_ENV, KEY)
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(PROMPTS.read_text().replace(
        "min_words: 8      # shorter answers are refused and asked again\n    truncated: trim",
        f"min_words: 3\n    truncated: {truncated}"))
    cut = Reply(content="A person waves. Then the person turns and", finish_reason="length")
    out, cache = tmp_path / "d.parquet", tmp_path / "cache"
    with FakeOpenAI(lambda body: cut if "in details" in last_user_text(body)
                    else gap_style(body)) as server:
        code = run_stage([*stage_args(classes_file, out, cache, server), "--prompts", str(prompts)])
    if truncated == "refuse":
        assert code == 2 and not out.exists()
        assert "(paragraph): answer cut at max_tokens=128" in capsys.readouterr().err
        return
    assert code == 0 and len(server.requests) == 20
    table = pq.read_table(out)
    assert [r["text"] for r in table.to_pylist() if r["kind"] == "paragraph"] == [
        "A person waves."] * 4
    assert table_metadata(table, "calls")["trimmed"] == 4


def test_allow_incomplete_marks_what_failed_and_asks_failed_parts_one_by_one(
        classes_file, tmp_path, monkeypatch, caplog):
    """A 135M model sometimes never answers a question usably: with --allow-incomplete the
    part question that failed is asked part by part, and an answer that still fails becomes
    the class name, marked as such, instead of failing the whole stage."""
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache = tmp_path / "d.parquet", tmp_path / "cache"

    def stubborn(body):
        question = last_user_text(body)
        if "drink water" in question and question.startswith("Suggest"):
            return "water, water"
        if "drink water" in question and question.startswith("Describing following body parts"):
            return "The drinking is done with the whole body."
        return gap_style(body)

    with FakeOpenAI(stubborn) as server:
        assert run_stage([*stage_args(classes_file, out, cache, server), "--allow-incomplete"]) == 0
    rows = pq.read_table(out).to_pylist()
    drink = [r for r in rows if r["class_id"] == 0]
    assert [(r["kind"], r["source"]) for r in drink if r["kind"] == "synonym"] == [
        ("synonym", "fallback/label-name")]
    assert [r["text"] for r in drink if r["source"] == "fallback/label-name"] == ["drink water"]
    assert [r["text"] for r in drink if r["kind"] == "part"] == [
        f"{part} follows drink water" for part in BODY_PARTS]
    assert all(r["request_hash"] for r in rows if r["source"] != "fallback/label-name")
    assert table_metadata(pq.read_table(out), "fallbacks") == ["'drink water' (synonym)"]
    assert "1 texts are the class name" in caplog.text
    assert sum(r["source"] == "fallback/label-name" for r in rows) == 1


def stubborn_about_drinking(body):
    """Refuses, whatever the seed: synonyms of "drink water", its part question and the
    follow-up about its hip."""
    question = last_user_text(body)
    if "drink water" not in question:
        return gap_style(body)
    if question.startswith("Suggest"):
        return "water, water"
    if question.startswith("Describing following body parts"):
        return "The drinking is done with the whole body."
    if question.endswith(": hip."):
        return "The knee bends slowly."
    return gap_style(body)


def test_refused_answers_are_paid_for_once(classes_file, tmp_path, monkeypatch):
    """Refused answers are cached as received: a rerun with the same settings (after
    `rm -rf results`) judges them again and sends 0 requests for the same table, fallbacks
    included; a higher --max-retries asks only the next seed of each refused request."""
    monkeypatch.setenv(KEY_ENV, KEY)
    cache = tmp_path / "cache"
    with FakeOpenAI(stubborn_about_drinking) as server:
        def describe_into(out, *extra):
            args = [*stage_args(classes_file, out, cache, server), "--allow-incomplete", *extra]
            assert run_stage(args) == 0
            return pq.read_table(out)

        first = describe_into(tmp_path / "first.parquet")
        sent = len(server.requests)
        assert sent == 4 * 5 + 2 + 2 + 6 + 2  # 3 seeds for each of the 3 refused requests
        assert table_metadata(first, "fallbacks") == ["'drink water' (hip)",
                                                      "'drink water' (synonym)"]

        monkeypatch.delenv(KEY_ENV)  # a rerun sends nothing, so needs no key
        again = describe_into(tmp_path / "again.parquet")
        assert len(server.requests) == sent
        assert again.equals(first)
        assert table_metadata(again, "fallbacks") == table_metadata(first, "fallbacks")
        assert table_metadata(again, "calls")["requests"] == 0

        monkeypatch.setenv(KEY_ENV, KEY)
        more = describe_into(tmp_path / "more.parquet", "--max-retries", "3")
        assert [r["seed"] for r in server.requests[sent:]] == [3, 3, 3]
        assert more.equals(first)  # the server stays stubborn
        describe_into(tmp_path / "more-again.parquet", "--max-retries", "3")
        assert len(server.requests) == sent + 3


@pytest.mark.parametrize(
    "fault",
    [Reply(status=429, headers={"Retry-After": "0"}), Reply(status=500), Reply(status=503),
     Reply(fault="reset"), Reply(fault="malformed"), Reply(content=""),
     Reply(content="x", finish_reason="length"), Reply(content="", finish_reason="content_filter"),
     Reply(content="head nods; hand waves")],
    ids=["429", "500", "503", "reset", "malformed", "empty", "length", "filter", "two-parts"],
)
def test_faults_keep_bad_answers_out_of_the_table(classes_file, tmp_path, monkeypatch, fault):
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache = tmp_path / "descriptions.parquet", tmp_path / "cache"
    with FakeOpenAI(gap_style) as server:
        server.script(fault, fault)
        assert run_stage(stage_args(classes_file, out, cache, server)) == 0
        assert len(server.requests) == 20 + 2
        texts = {r["text"] for r in pq.read_table(out).to_pylist()}
        assert not {"", "x", "head nods; hand waves"} & texts
        answered = fault.status == 200 and fault.fault is None  # paid for, so cached
        assert len(list(cache.rglob("*.json"))) == 20 + 2 * answered


def test_missing_key_stops_before_any_request(classes_file, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeOpenAI(gap_style) as server:
        assert run_stage(stage_args(classes_file, tmp_path / "d.parquet", tmp_path / "c", server)) == 2
        assert server.requests == []
    assert f"environment variable {KEY_ENV} is not set" in capsys.readouterr().err


def test_unknown_model_is_one_clear_error(classes_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeOpenAI(gap_style) as server:
        args = stage_args(classes_file, tmp_path / "d.parquet", tmp_path / "c", server, "gpt-9")
        assert run_stage([*args, "--concurrency", "1"]) == 2
        assert len(server.requests) == 1
    assert "unknown model 'gpt-9'" in capsys.readouterr().err
    assert not list((tmp_path / "c").rglob("*.json")) if (tmp_path / "c").exists() else True


def test_the_key_is_in_no_file_the_stage_wrote(classes_file, tmp_path, monkeypatch, capsys):
    """Run the stage with debug logging (the openai/http libraries' too) and a request that
    fails, then grep the table, the cache and the log for the key."""
    monkeypatch.setenv(KEY_ENV, KEY)
    out, cache, log = tmp_path / "out/descriptions.parquet", tmp_path / "cache", tmp_path / "log"
    handler = logging.FileHandler(log)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.DEBUG)  # (setLevel, unlike assigning, resets loggers' caches)
    root.addHandler(handler)
    try:
        with FakeOpenAI(gap_style) as server:
            server.script(Reply(status=401, error=f"Incorrect API key provided: {KEY}"))
            assert run_stage(["-v", *stage_args(classes_file, out, cache, server)]) == 2
            assert run_stage(["-v", *stage_args(classes_file, out, cache, server)]) == 0
            assert all(h["authorization"] == f"Bearer {KEY}" for h in server.headers)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
    with open(log, "a") as stream:
        stream.write(capsys.readouterr().err)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != classes_file]
    assert out in written and log in written and len(written) >= 12
    assert "HTTP 401" in log.read_text() and "HTTP Request: POST" in log.read_text()
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path


def test_served_model_is_not_started_when_the_cache_answers_all(classes_file, tmp_path,
                                                                monkeypatch):
    """The served model's cache key does not depend on the server's port: fill the cache
    through a fake server, then the stage must not start the local server at all, unless
    one answer (here a follow-up for a part left out, then a brief description) is missing."""
    from actionlm.knowledge import serve

    def no_foot(body):
        if last_user_text(body).startswith("Describing following body parts"):
            return "head nods; hand waves; arm rises; hip turns; leg steps"
        return gap_style(body)

    model_dir = tmp_path / "smollm2-test"
    model_dir.mkdir()
    out, cache = tmp_path / "d.parquet", tmp_path / "cache"
    args = ["--classes", str(classes_file), "--out", str(out), "--cache-dir", str(cache),
            "--serve-model-dir", str(model_dir)]
    with FakeOpenAI(no_foot, models=[serve.served_model_name(model_dir)]) as server:
        monkeypatch.setattr(serve, "serve_model", _fake_serve(server.base_url))
        assert run_stage(args) == 0
        assert len(server.requests) == 20 + 4
        assert all(r["generation_config"] == '{"do_sample": true}' for r in server.requests)
        assert all(h["authorization"] == "Bearer no-key" for h in server.headers)
        rows = pq.read_table(out).to_pylist()

        monkeypatch.setattr(serve, "serve_model", _fake_serve(None))
        assert run_stage(args) == 0
        assert pq.read_table(out).to_pylist() == rows

        foot = next(r for r in rows if r["part"] == "foot")
        next(cache.rglob(f"{foot['request_hash']}.json")).unlink()
        with pytest.raises(AssertionError, match="server was started"):
            run_stage(args)
        monkeypatch.setattr(serve, "serve_model", _fake_serve(server.base_url))
        assert run_stage(args) == 0
        assert len(server.requests) == 20 + 4 + 1

        brief = next(r for r in rows if r["kind"] == "brief")
        next(cache.rglob(f"{brief['request_hash']}.json")).unlink()
        monkeypatch.setattr(serve, "serve_model", _fake_serve(None))
        with pytest.raises(AssertionError, match="server was started"):
            run_stage(args)
        monkeypatch.setattr(serve, "serve_model", _fake_serve(server.base_url))
        assert run_stage(args) == 0
        assert len(server.requests) == 20 + 4 + 2
        assert last_user_text(server.requests[-1]).startswith(BRIEF_START)
        assert pq.read_table(out).to_pylist() == rows
    assert {r["source"] for r in rows} == {"local-server/smollm2-test"}


def test_served_model_is_not_started_again_for_refused_answers(classes_file, tmp_path,
                                                               monkeypatch):
    from actionlm.knowledge import serve

    model_dir = tmp_path / "smollm2-test"
    model_dir.mkdir()
    args = ["--classes", str(classes_file), "--cache-dir", str(tmp_path / "cache"),
            "--serve-model-dir", str(model_dir), "--max-retries", "1", "--allow-incomplete"]
    with FakeOpenAI(stubborn_about_drinking,
                    models=[serve.served_model_name(model_dir)]) as server:
        monkeypatch.setattr(serve, "serve_model", _fake_serve(server.base_url))
        assert run_stage([*args, "--out", str(tmp_path / "first.parquet")]) == 0
        monkeypatch.setattr(serve, "serve_model", _fake_serve(None))
        assert run_stage([*args, "--out", str(tmp_path / "again.parquet")]) == 0
    first, again = (pq.read_table(tmp_path / f"{name}.parquet") for name in ("first", "again"))
    assert again.equals(first) and len(table_metadata(again, "fallbacks")) == 2


def _fake_serve(base_url):
    from contextlib import contextmanager

    @contextmanager
    def serve_model(model_dir, **kw):
        if base_url is None:
            raise AssertionError("the server was started although every answer was cached")
        yield base_url

    return serve_model


# ---------------------------------------------------------------- GAP import


def write_gap_files(folder: Path, names: list[str]) -> None:
    """Files in GAP's released formats, under names that do not say which is which."""
    folder.mkdir()
    (folder / "a.txt").write_text("".join(
        f"{n};head looks at {n}; hand holds it; arm bends; hip stays; leg stays; foot stays.\n"
        for n in names))
    (folder / "b.txt").write_text("".join(f"{n},alpha, beta gamma, delta\n" for n in names))
    (folder / "c.txt").write_text("".join(
        f"{n},The man does it. He moves his arms, slowly and with care, then he stops.\n"
        for n in names))
    (folder / "labels.txt").write_text("".join(f"{n}\n" for n in names))


def test_gap_import_detects_files_by_content_and_matches_names(tmp_path):
    folder = tmp_path / "gap"
    write_gap_files(folder, ["Drink Water.", "SAY HI", "wave hands", "somersault"])
    classes = [(0, "drink water", 1), (1, 'say "hi"', 7), (2, "wave\nhands", 9)]
    table = import_gap(folder, classes)
    rows = table.to_pylist()
    assert {r["source"] for r in rows} == {"gap-import"} and {r["request_hash"] for r in rows} == {None}
    assert [r["kind"] for r in rows if r["class_id"] == 1] == ["part"] * 6 + ["synonym"] * 3 + ["paragraph"]
    assert [r["text"] for r in rows if r["class_id"] == 0 and r["kind"] == "synonym"] == [
        "alpha", "beta gamma", "delta"]
    assert rows[0]["text"] == "head looks at Drink Water." .rstrip(".") and rows[5]["text"] == "foot stays"
    assert [r["class_name"] for r in rows if r["kind"] == "paragraph"] == [n for _, n, _ in classes]
    meta = table_metadata(table, "gap_import")
    assert meta["files"] == {"part": "a.txt", "synonym": "b.txt", "paragraph": "c.txt"}
    assert meta["unused_lines"] == 3 and meta["unmatched_classes"] == []


@pytest.mark.parametrize(
    "lines, kind",
    [
        (["wave,flap hand, signal, greet, hail from afar, salute.", "sit,perch, settle down"],
         "synonym"),
        (["wave,He raises a hand. Then, smiling, he waves it.", "sit,The man sits down slowly."],
         "paragraph"),
        (["wave,The arm, which is raised high above the shoulder, swings left and right"],
         "paragraph"),
        (["wave;head up;hand flaps;arm raised;hip still;leg still;foot still"], "part"),
        (["wave", "sit"], None),
    ],
    ids=["synonyms", "sentences", "long-pieces", "parts", "label-map"],
)
def test_gap_file_kind_is_told_by_content(lines, kind):
    assert describe.detect_gap_kind(lines) == kind


def test_gap_import_reports_unmatched_classes(tmp_path):
    folder = tmp_path / "gap"
    write_gap_files(folder, ["drink water", "eat meal"])
    classes = [(0, "drink water", 1), (1, "eat meal/snack", 2)]
    with pytest.raises(ActionlmError, match=r"1 classes have no GAP line.*'eat meal/snack'.*native-id"):
        import_gap(folder, classes)
    table = import_gap(folder, classes, allow_missing=True)
    assert {r["class_id"] for r in table.to_pylist()} == {0}
    assert table_metadata(table, "gap_import")["unmatched_classes"] == ["eat meal/snack"]
    by_line = import_gap(folder, classes, match="native-id")
    assert {r["class_name"] for r in by_line.to_pylist()} == {"drink water", "eat meal/snack"}


def test_gap_import_names_a_bad_line(tmp_path):
    folder = tmp_path / "gap"
    write_gap_files(folder, ["drink water", "eat meal", "throw"])
    (folder / "a.txt").write_text((folder / "a.txt").read_text().replace("hip stays; ", "", 1))
    with pytest.raises(InputError, match=r"a.txt:1: expected name;head;hand;arm;hip;leg;foot"):
        import_gap(folder, [(0, "drink water", 1)])


def test_gap_import_through_the_cli_makes_no_request(classes_file, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    folder = tmp_path / "gap"
    write_gap_files(folder, ["Drink water", 'say "HI"', "wave hands", "jump - unicode 跳"])
    out = tmp_path / "d.parquet"
    assert run_stage(["--classes", str(classes_file), "--out", str(out),
                      "--import-gap", str(folder)]) == 0
    assert pq.read_table(out).num_rows == 4 * (6 + 3 + 1)
