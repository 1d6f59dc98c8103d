"""Built-in class-name tables of the supported datasets, and the one reader of a prepared
dataset's ``classes.parquet`` (label, class_name, native_id).

Labels in every table written by actionlm are 0-based positions in the dataset's class list;
``native_id`` keeps the dataset's own 1-based action id (NTU ``A###``, NW-UCLA ``a##``).
A class table is read only if its labels are exactly 0..K-1 and its names (stripped) are
unique case-insensitively: the names are the LLM recognizers' answers and the legends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from actionlm.errors import ActionlmError
from actionlm.io import parquet_file, read_table

NTU120_CLASS_NAMES: tuple[str, ...] = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup",
    "throw", "sitting down", "standing up (from sitting position)", "clapping", "reading",
    "writing", "tear up paper", "wear jacket", "take off jacket", "wear a shoe",
    "take off a shoe", "wear on glasses", "take off glasses", "put on a hat/cap",
    "take off a hat/cap", "cheer up", "hand waving", "kicking something",
    "reach into pocket", "hopping (one foot jumping)", "jump up",
    "make a phone call/answer phone", "playing with phone/tablet", "typing on a keyboard",
    "pointing to something with finger", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute",
    "put the palms together", "cross hands in front (say stop)", "sneeze/cough", "staggering",
    "falling", "touch head (headache)", "touch chest (stomachache/heart pain)",
    "touch back (backache)", "touch neck (neckache)", "nausea or vomiting condition",
    "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person",
    "point finger at the other person", "hugging other person", "giving something to other person",
    "touch other person's pocket", "handshaking", "walking towards each other",
    "walking apart from each other",
    # NTU RGB+D 120 additions (A61-A120)
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball",
    "tennis bat swing", "juggling table tennis balls", "hush (quite)", "flick hair",
    "thumb up", "thumb down", "make ok sign", "make victory sign", "staple book",
    "counting money", "cutting nails", "cutting paper (using scissors)", "snapping fingers",
    "open bottle", "sniff (smell)", "squat down", "toss a coin", "fold paper",
    "ball up paper", "play magic cube", "apply cream on face", "apply cream on hand back",
    "put on bag", "take off bag", "put something into a bag", "take something out of a bag",
    "open a box", "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)",
    "cross arms", "arm circles", "arm swings", "running on the spot", "butt kicks (kick backward)",
    "cross toe touch", "side kick", "yawn", "stretch oneself", "blow nose",
    "hit other person with something", "wield knife towards other person",
    "knock over other person (hit with body)", "grab other person's stuff",
    "shoot at other person with a gun", "step on foot", "high-five", "cheers and drink",
    "carry something with other person", "take a photo of other person", "follow other person",
    "whisper in other person's ear", "exchange things with other person",
    "support somebody with hand", "finger-guessing game (playing rock-paper-scissors)",
)

NW_UCLA_CLASSES: dict[int, str] = {
    1: "pick up with one hand",
    2: "pick up with two hands",
    3: "drop trash",
    4: "walk around",
    5: "sit down",
    6: "stand up",
    8: "donning",
    9: "doffing",
    11: "throw",
    12: "carry",
}

# Two-person interactions: NTU60 A50-A60 and NTU120 A106-A120.
NTU_MUTUAL_ACTIONS: frozenset[int] = frozenset(range(50, 61)) | frozenset(range(106, 121))


@dataclass(frozen=True)
class ClassTable:
    """The ordered class list of one dataset: label i <-> native_ids[i] <-> names[i]."""

    dataset: str
    native_ids: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.native_ids) != len(self.names):
            raise ValueError("class table: native_ids and names differ in length")
        if len(set(self.native_ids)) != len(self.native_ids):
            raise ValueError(f"class table {self.dataset!r}: duplicate action ids")

    def __len__(self) -> int:
        return len(self.names)

    def label_of(self, native_id: int) -> int | None:
        """0-based label of a native action id, or None when the class is not in this table."""
        try:
            return self.native_ids.index(native_id)
        except ValueError:
            return None


def ntu_class_table(dataset: str, actions: list[int] | None = None) -> ClassTable:
    """NTU60 (A1-A60) or NTU120 (A1-A120); ``actions`` restricts and relabels to a subset."""
    n = {"ntu60": 60, "ntu120": 120}.get(dataset)
    if actions is None:
        if n is None:
            raise ValueError(f"unknown NTU dataset {dataset!r}: expected ntu60 or ntu120")
        actions = list(range(1, n + 1))
    bad = [a for a in actions if not 1 <= a <= len(NTU120_CLASS_NAMES)]
    if bad:
        raise ValueError(f"NTU action ids out of range 1..120: {bad}")
    return ClassTable(dataset, tuple(actions), tuple(NTU120_CLASS_NAMES[a - 1] for a in actions))


def nw_ucla_class_table() -> ClassTable:
    return ClassTable("nw_ucla", tuple(NW_UCLA_CLASSES), tuple(NW_UCLA_CLASSES.values()))


def read_class_rows(path: str | os.PathLike) -> list[tuple[int, str, int | None]]:
    """(label, class_name, native_id) of every class of a classes.parquet, in label order
    (native_id None when the table has no such column)."""
    if not os.path.isfile(path):
        raise ActionlmError(f"{path}: no such class table (run `actionlm prepare`)")
    parquet_file(path, ["label", "class_name"])
    table = read_table(path)
    native = (table["native_id"].to_pylist() if "native_id" in table.column_names
              else [None] * table.num_rows)
    rows = sorted(zip(table["label"].to_pylist(),
                      [str(n).strip() for n in table["class_name"].to_pylist()], native))
    labels = [r[0] for r in rows]
    if labels != list(range(len(rows))):
        raise ActionlmError(f"{path}: labels must be 0..{len(rows) - 1}, found {labels[:10]}")
    seen: dict[str, int] = {}
    for label, name, _ in rows:
        if name.casefold() in seen:
            raise ActionlmError(f"{path}: duplicate class_name {name!r} (labels "
                                f"{seen[name.casefold()]} and {label})")
        seen[name.casefold()] = label
    return rows


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names of a classes.parquet in label order (checked as read_class_rows does)."""
    return [name for _, name, _ in read_class_rows(path)]
