"""The study's tasks: the built-in tasks plus two E2E variants, each as (train examples, test items).

- ``dart`` drops DART's E2E-derived rows in every split (the base was pretrained on DART without them);
- ``e2e-opaque``: E2E with slot names replaced by opaque codes and the slots in a shuffled order
  (less familiar to the base);
- ``e2e-plain``: E2E with the meaning representation rewritten as plain English key-value phrases
  (more familiar).

Test sets are a fixed random sample of ``test_items`` distinct sources (seed 0), the same for every
method, so paired comparisons compare the same items.
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from training.data import EvalItem, Example, load_task
from training.data.core import build_split

E2E_SLOT = re.compile(r"\s*([^\[\],]+)\[([^\]]*)\]\s*,?")
E2E_OPAQUE = {  # slot -> code: nothing a reader (or a base) can recognise
    "name": "zq1",
    "eatType": "vx7",
    "food": "kj3",
    "priceRange": "wb5",
    "customer rating": "xh2",
    "area": "pf9",
    "familyFriendly": "gm4",
    "near": "dt8",
}
E2E_PLAIN = {  # slot -> plain English phrase
    "name": "the name is",
    "eatType": "the type of place is",
    "food": "the food is",
    "priceRange": "the price range is",
    "customer rating": "the customer rating is",
    "area": "the area is",
    "familyFriendly": "family friendly:",
    "near": "it is near",
}
STUDY_TASKS = (
    "e2e",
    "fr-en",
    "e2e-opaque",
    "e2e-plain",
    "de-en",
    "webnlg",
    "overnight",
    "ro-en",
    "dart",
    "cs-en",
)


def e2e_slots(mr: str) -> list[tuple[str, str]]:
    """``name[The Eagle], food[French]`` -> [("name", "The Eagle"), ("food", "French")]."""
    return [(m.group(1).strip(), m.group(2).strip()) for m in E2E_SLOT.finditer(mr)]


def e2e_opaque(mr: str) -> str:
    """Slot names -> opaque codes, slots in an order shuffled by the MR itself (deterministic)."""
    slots = e2e_slots(mr)
    random.Random(zlib.crc32(mr.encode())).shuffle(slots)
    return " ".join(f"{E2E_OPAQUE.get(k, k)}[{v}]" for k, v in slots)


def e2e_plain(mr: str) -> str:
    """Slots -> "the name is The Eagle; the food is French; ..." in their original order."""
    return "; ".join(f"{E2E_PLAIN.get(k, k)} {v}" for k, v in e2e_slots(mr)) + "."


VARIANTS = {"e2e-opaque": e2e_opaque, "e2e-plain": e2e_plain}


@dataclass
class StudyData:
    task: str
    train: list[Example]
    test: list[EvalItem]
    test_total: int  # distinct test sources before sampling


def _sample(items: list[EvalItem], count: int | None) -> list[EvalItem]:
    if count is None or len(items) <= count:
        return items
    keep = sorted(random.Random(0).sample(range(len(items)), count))
    return [items[i] for i in keep]


def load_study_task(
    task: str, data_dir: str | Path | None = None, test_items: int | None = 300, split: str = "test"
) -> StudyData:
    """Train examples and a sample of ``test_items`` test items (the ``split``) of one study task."""
    base_task = "e2e" if task in VARIANTS else task
    exclude = {"exclude_e2e": True} if task == "dart" else {}
    train = load_task(base_task, "train", data_dir, **exclude)
    test = load_task(base_task, split, data_dir, **exclude)
    if task in VARIANTS:
        rewrite = VARIANTS[task]
        train = build_split(task, "train", [(rewrite(e.source), e.target) for e in train.examples])
        test = build_split(task, split, [(rewrite(e.source), e.target) for e in test.examples])
    return StudyData(task, train.examples, _sample(test.items, test_items), len(test.items))


def task_inputs(task: str, data_dir: str | Path | None = None, split: str = "test") -> list[str]:
    """Every distinct source of a study task's split (what familiarity is measured on)."""
    return [item.source for item in load_study_task(task, data_dir, None, split).test]
