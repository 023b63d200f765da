"""Data loaders on small fixtures written like the real files, and counts on the real data when present."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.data import (
    DATA_DIR_ENV,
    TASKS,
    DataFormatError,
    DataNotFoundError,
    EvalItem,
    Example,
    core,
    linearize_triples,
    load_task,
    load_user_files,
    resolve_data_dir,
)
from training.data.tasks import OVERNIGHT_DOMAINS
from training.pretrain.books import load_books

# --- fixture data, in the formats described by each folder's SOURCE.md --------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    _write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


E2E_TRAIN = (
    "mr,ref\n"
    '"name[The Vaults], eatType[pub], priceRange[more than £30]","The Vaults pub.  Prices start at £30."\n'
    '"name[Alimentum], area[city centre]","Alimentum is in the centre."\n'
    '"name[The Vaults], eatType[pub], priceRange[more than £30]","A pub, ""The Vaults"", is pricey."\n'
    '"name[The Vaults], eatType[pub], priceRange[more than £30]","The Vaults pub. Prices start at £30."\n'
)
DART_ROWS: list[dict[str, Any]] = [
    {
        "tripleset": [
            ["First Clearing", "LOCATION", "On NYS 52"],
            ["On NYS 52", "CITY_OR_TOWN", "Callicoon"],
        ],
        "subtree_was_extended": False,
        "source": "WikiTableQuestions_mturk",
        "text": "First Clearing\tbased on Callicoon",
        "entry_id": 0,
    },
    {
        "tripleset": [["Alimentum", "area", "city centre"]],
        "subtree_was_extended": None,
        "source": "e2e",
        "text": "Alimentum is in the city centre.",
        "entry_id": 1,
    },
    {
        "tripleset": [
            ["First Clearing", "LOCATION", "On NYS 52"],
            ["On NYS 52", "CITY_OR_TOWN", "Callicoon"],
        ],
        "subtree_was_extended": False,
        "source": "WikiTableQuestions_mturk",
        "text": "First Clearing is on NYS 52 in Callicoon.",
        "entry_id": 0,
    },
]
WEBNLG_ENTRIES: list[dict[str, Any]] = [
    {
        "eid": "Id1",
        "category": "Airport",
        "size": 1,
        "triples": [["Aarhus_Airport", "cityServed", '"Aarhus, Denmark"']],
        "lexs": [
            {"lid": "Id1", "comment": "good", "text": "The Aarhus is the airport of Aarhus, Denmark."},
            {"lid": "Id2", "comment": "good", "text": "Aarhus Airport serves the city of Aarhus, Denmark."},
        ],
    },
    {
        "eid": "Id2",
        "category": "Airport",
        "size": 2,
        "triples": [
            ["Aarhus_Airport", "runwayLength", "2702.0"],
            ["Aarhus", "leaderName", "Jacob_Bundsgaard"],
        ],
        "lexs": [{"lid": "Id1", "comment": "good", "text": "Aarhus Airport's runway is 2702.0 long."}],
    },
]


def _overnight_row(domain: str, i: int) -> str:
    return f"{domain} utterance {i}\tcanonical {i}\t( call SW.listValue ( {domain} lf {i} ) )"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A miniature shared/data folder."""
    root = tmp_path / "data"
    _write(root / "e2e" / "trainset.csv", E2E_TRAIN)
    _write(root / "e2e" / "devset.csv", 'mr,ref\n"name[A]","A is a place."\n')
    _write(
        root / "e2e" / "testset_w_refs.csv",
        '"mr","ref"\n"name[Blue Spice], area[city centre]","Blue Spice."\n',
    )
    for split in ("train", "dev", "test"):
        _jsonl(root / "dart" / f"{split}.jsonl", DART_ROWS)
        _jsonl(root / "webnlg2017" / f"{split}.jsonl", WEBNLG_ENTRIES)
    for domain in OVERNIGHT_DOMAINS:
        n_train = 12 if domain == "basketball" else 1
        _write(
            root / "overnight" / f"{domain}_train.tsv",
            "".join(_overnight_row(domain, i) + "\n" for i in range(n_train)),
        )
        _write(root / "overnight" / f"{domain}_test.tsv", _overnight_row(domain, 100) + "\n")
    for stem in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "fr", "de", "cs"):
            _write(root / "multi30k" / f"{stem}.{lang}", f"{stem} {lang} 1\n{stem}  {lang} 2\n")
    for lang in ("eng", "fra", "deu", "ces", "ron"):
        _write(root / "flores101_devtest" / f"{lang}.devtest", f"flores {lang}\u00a01\n")
    for pair in ("fr-en", "de-en"):
        src = pair[:2]
        for lang in (src, "en"):
            _write(root / "wmt14_newstest_fr_de_en" / pair / f"newstest2014.{lang}", f"news {pair} {lang}\n")
    for stem in ("europarl_toy10k", "newsdev2016", "newstest2016"):
        _write(root / "wmt16_ro_en" / f"{stem}.ro", f"{stem} ro ș\n(Aplauze)\n(Aplauze)\n")
        _write(root / "wmt16_ro_en" / f"{stem}.en", f"{stem} en\n(Applause)\n\n")
    _write(root / "pretrain_en" / "books" / "b_book.txt", "Chapter I\n\nIt was  a dark night.\n")
    _write(root / "pretrain_en" / "books" / "a_book.txt", "A first\nbook.\n")
    return root


# --- data folder resolution ---------------------------------------------------------------------------


def test_resolve_explicit_and_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir / "e2e"))
    assert resolve_data_dir(data_dir) == data_dir.resolve()
    assert resolve_data_dir(str(data_dir)) == data_dir.resolve()
    assert resolve_data_dir() == (data_dir / "e2e").resolve()


def test_resolve_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(core, "_repo_root", lambda: tmp_path / "elsewhere" / "repo")
    (tmp_path / "work" / "repo").mkdir(parents=True)
    (tmp_path / "work" / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "repo")
    assert resolve_data_dir() == (tmp_path / "work" / "shared" / "data").resolve()

    monkeypatch.chdir(tmp_path)  # no ../shared/data here: fall back to <repo root>/../shared/data
    (tmp_path / "elsewhere" / "shared" / "data").mkdir(parents=True)
    assert resolve_data_dir() == (tmp_path / "elsewhere" / "shared" / "data").resolve()


def test_resolve_errors_name_paths_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(
        DataNotFoundError, match=r"missing.*the data_dir argument.*--data-dir.*INPUTTUNE_DATA_DIR"
    ):
        resolve_data_dir(tmp_path / "missing")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match=r"nowhere \(\$INPUTTUNE_DATA_DIR\)"):
        resolve_data_dir()

    monkeypatch.delenv(DATA_DIR_ENV)
    monkeypatch.setattr(core, "_repo_root", lambda: tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataNotFoundError) as info:
        resolve_data_dir()
    message = str(info.value)
    assert str(tmp_path / ".." / "shared" / "data") in message
    assert str(tmp_path / "shared" / "data") in message
    assert isinstance(info.value, FileNotFoundError)


# --- built-in tasks -----------------------------------------------------------------------------------

VAULTS = "name[The Vaults], eatType[pub], priceRange[more than £30]"


def test_e2e_groups_references_by_mr(data_dir: Path) -> None:
    train = load_task("e2e", "train", data_dir)
    assert (train.task, train.split) == ("e2e", "train")
    assert train.examples == [
        Example(VAULTS, "The Vaults pub. Prices start at £30."),
        Example("name[Alimentum], area[city centre]", "Alimentum is in the centre."),
        Example(VAULTS, 'A pub, "The Vaults", is pricey.'),
        Example(VAULTS, "The Vaults pub. Prices start at £30."),  # duplicate rows are kept for training
    ]
    assert train.items == [
        EvalItem(VAULTS, ("The Vaults pub. Prices start at £30.", 'A pub, "The Vaults", is pricey.')),
        EvalItem("name[Alimentum], area[city centre]", ("Alimentum is in the centre.",)),
    ]
    test = load_task("e2e", "test", data_dir)
    assert test.items == [EvalItem("name[Blue Spice], area[city centre]", ("Blue Spice.",))]


def test_limit_keeps_first_sources_and_their_examples(data_dir: Path) -> None:
    train = load_task("e2e", "train", data_dir, limit=1)
    assert [item.source for item in train.items] == [VAULTS]
    assert len(train.examples) == 3 and {e.source for e in train.examples} == {VAULTS}
    with pytest.raises(ValueError, match="limit must be a positive"):
        load_task("e2e", "train", data_dir, limit=0)


def test_linearize_triples() -> None:
    assert linearize_triples([["a b", "r", "c"], ["c", "s", "d"]]) == "<H> a b <R> r <T> c <H> c <R> s <T> d"


def test_dart_linearises_and_excludes_e2e(data_dir: Path) -> None:
    first = "<H> First Clearing <R> LOCATION <T> On NYS 52 <H> On NYS 52 <R> CITY_OR_TOWN <T> Callicoon"
    dart = load_task("dart", "dev", data_dir)
    assert dart.examples == [
        Example(first, "First Clearing based on Callicoon"),
        Example("<H> Alimentum <R> area <T> city centre", "Alimentum is in the city centre."),
        Example(first, "First Clearing is on NYS 52 in Callicoon."),
    ]
    assert dart.items[0] == EvalItem(
        first, ("First Clearing based on Callicoon", "First Clearing is on NYS 52 in Callicoon.")
    )
    no_e2e = load_task("dart", "train", data_dir, exclude_e2e=True)
    assert [e.source for e in no_e2e.examples] == [first, first]
    with pytest.raises(ValueError, match="exclude_e2e applies only to task 'dart'"):
        load_task("e2e", "train", data_dir, exclude_e2e=True)


def test_webnlg_expands_lexicalisations(data_dir: Path) -> None:
    webnlg = load_task("webnlg", "test", data_dir)
    assert webnlg.items == [
        EvalItem(
            '<H> Aarhus_Airport <R> cityServed <T> "Aarhus, Denmark"',
            (
                "The Aarhus is the airport of Aarhus, Denmark.",
                "Aarhus Airport serves the city of Aarhus, Denmark.",
            ),
        ),
        EvalItem(
            "<H> Aarhus_Airport <R> runwayLength <T> 2702.0 <H> Aarhus <R> leaderName <T> Jacob_Bundsgaard",
            ("Aarhus Airport's runway is 2702.0 long.",),
        ),
    ]
    assert len(webnlg.examples) == 3


def test_overnight_maps_logical_form_to_utterance_with_held_out_dev(data_dir: Path) -> None:
    train = load_task("overnight", "train", data_dir)
    dev = load_task("overnight", "dev", data_dir)
    test = load_task("overnight", "test", data_dir)
    # basketball has 12 train rows: row 9 (0-based) is dev; the 7 other domains have 1 row each, all train.
    assert dev.examples == [Example("( call SW.listValue ( basketball lf 9 ) )", "basketball utterance 9")]
    assert len(train.examples) == 11 + 7
    assert train.examples[0] == Example("( call SW.listValue ( basketball lf 0 ) )", "basketball utterance 0")
    assert dev.examples[0] not in train.examples
    assert [e.target for e in test.examples] == [f"{domain} utterance 100" for domain in OVERNIGHT_DOMAINS]


def test_translation_files_per_split(data_dir: Path) -> None:
    assert load_task("fr-en", "train", data_dir).examples == [
        Example("train fr 1", "train en 1"),
        Example("train fr 2", "train en 2"),
    ]
    assert load_task("de-en", "dev", data_dir).examples[0] == Example("val de 1", "val en 1")
    assert load_task("cs-en", "test", data_dir).examples[0] == Example(
        "test_2016_flickr cs 1", "test_2016_flickr en 1"
    )
    assert load_task("cs-en", "flores", data_dir).examples == [Example("flores ces 1", "flores eng 1")]
    assert load_task("de-en", "newstest2014", data_dir).examples == [
        Example("news de-en de", "news de-en en")
    ]
    assert load_task("ro-en", "flores", data_dir).examples == [Example("flores ron 1", "flores eng 1")]


def test_ro_en_drops_pairs_with_an_empty_side(data_dir: Path) -> None:
    test = load_task("ro-en", "test", data_dir)
    assert test.examples == [
        Example("newstest2016 ro ș", "newstest2016 en"),
        Example("(Aplauze)", "(Applause)"),
    ]
    assert load_task("ro-en", "train", data_dir).examples[0] == Example(
        "europarl_toy10k ro ș", "europarl_toy10k en"
    )
    assert load_task("ro-en", "dev", data_dir).examples[0].source == "newsdev2016 ro ș"


def test_unknown_task_and_split(data_dir: Path) -> None:
    with pytest.raises(
        ValueError, match=r"unknown task 'xx-en': known tasks are e2e, dart, webnlg, overnight, fr-en"
    ):
        load_task("xx-en", "train", data_dir)
    with pytest.raises(
        ValueError,
        match=r"task 'cs-en' has no split 'newstest2014': its splits are train, dev, test, flores$",
    ):
        load_task("cs-en", "newstest2014", data_dir)
    assert set(TASKS) == {"e2e", "dart", "webnlg", "overnight", "fr-en", "de-en", "cs-en", "ro-en"}


def test_missing_and_malformed_files(data_dir: Path) -> None:
    (data_dir / "multi30k" / "val.fr").unlink()
    with pytest.raises(DataNotFoundError, match=r"multi30k/val\.fr is missing.*INPUTTUNE_DATA_DIR"):
        load_task("fr-en", "dev", data_dir)
    (data_dir / "overnight" / "recipes_test.tsv").unlink()
    with pytest.raises(DataNotFoundError, match=r"recipes_test\.tsv"):
        load_task("overnight", "test", data_dir)
    _write(data_dir / "multi30k" / "val.de", "one line only\n")
    with pytest.raises(DataFormatError, match=r"val\.de has 1 lines but .*val\.en has 2"):
        load_task("de-en", "dev", data_dir)
    _write(data_dir / "dart" / "test.jsonl", '{"tripleset": [["a", "b", "c"]], "source": "e2e"}\n')
    with pytest.raises(DataFormatError, match=r"test\.jsonl, line 1: missing field 'text'"):
        load_task("dart", "test", data_dir)
    _write(data_dir / "webnlg2017" / "dev.jsonl", "\n{not json\n")
    with pytest.raises(DataFormatError, match=r"dev\.jsonl, line 2: not valid JSON"):
        load_task("webnlg", "dev", data_dir)


def test_load_books(data_dir: Path) -> None:
    assert load_books(data_dir) == [
        ("a_book.txt", "A first\nbook.\n"),
        ("b_book.txt", "Chapter I\n\nIt was  a dark night.\n"),
    ]
    for path in (data_dir / "pretrain_en" / "books").iterdir():
        path.unlink()
    with pytest.raises(DataNotFoundError, match=r"no books found"):
        load_books(data_dir)


# --- user files ---------------------------------------------------------------------------------------


def test_user_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "mine.jsonl"
    _write(jsonl, '{"source": " a  b ", "target": "x", "id": 7}\n\n{"source": "a b", "target": "y\\tz"}\n')
    split = load_user_files(jsonl)
    assert (split.task, split.split) == ("mine", "user")
    assert split.examples == [Example("a b", "x"), Example("a b", "y z")]
    assert split.items == [EvalItem("a b", ("x", "y z"))]

    csv_path = tmp_path / "mine.csv"
    _write(csv_path, '\ufeffid,source,target\n1,"two\nlines","t, with comma"\n2,s,"say ""hi"""\n')
    split = load_user_files(csv_path, split="dev")
    assert split.split == "dev"
    assert split.examples == [Example("two lines", "t, with comma"), Example("s", 'say "hi"')]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "a.jsonl",
            '{"source": "s", "target": "t"}\n{"source": "s"}\n',
            r"a\.jsonl, line 2: field 'target' is missing",
        ),
        ("a.jsonl", '{"source": 3, "target": "t"}\n', r"line 1: field 'source' must be a string, got int"),
        ("a.jsonl", '{"source": "s", "target": " \\n "}\n', r"line 1: field 'target' is empty"),
        ("a.jsonl", '["s", "t"]\n', r"line 1: expected an object with fields 'source' and 'target'"),
        ("a.jsonl", '{"source": "s", "target": "t"}\n{"source"\n', r"line 2: not valid JSON"),
        ("a.jsonl", "\n", r"no examples found"),
        ("a.csv", "source,text\ns,t\n", r"a\.csv, line 1: .*missing: target"),
        ("a.csv", 'source,target\ns,t\n"multi\nline",\n', r"a\.csv, line 3: field 'target' is empty"),
        ("a.csv", "source,target\ns\n", r"line 2: field 'target' is missing"),
        ("a.txt", "s\tt\n", r"unknown file type '\.txt'"),
    ],
)
def test_user_file_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    _write(path, content)
    with pytest.raises(DataFormatError, match=message):
        load_user_files(path)


def test_user_file_missing(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"user data file .*nope\.jsonl does not exist"):
        load_user_files(tmp_path / "nope.jsonl")


# --- the real data (counts from each SOURCE.md) --------------------------------------------------------


@pytest.fixture(scope="module")
def real_data_dir() -> Path:
    try:
        return resolve_data_dir()
    except DataNotFoundError as e:
        pytest.skip(f"real data not present, skipping the counts check ({e})")


# (task, split): (examples, distinct sources). Examples = rows; distinct sources group identical inputs,
# which is fewer than DART's entries (2,768 / 5,097) because some entries repeat a tripleset.
REAL_COUNTS = {
    ("e2e", "train"): (42_061, 4_862),
    ("e2e", "dev"): (4_672, 547),
    ("e2e", "test"): (4_693, 630),
    ("dart", "train"): (62_659, 30_136),
    ("dart", "dev"): (6_980, 2_721),
    ("dart", "test"): (12_551, 4_159),
    ("webnlg", "train"): (18_102, 6_893),
    ("webnlg", "dev"): (2_268, 871),
    ("webnlg", "test"): (4_928, 1_862),
    ("overnight", "train"): (9_851, 2_358),
    ("overnight", "dev"): (1_091, 868),
    ("overnight", "test"): (2_740, 1_643),
    ("fr-en", "train"): (29_000, 28_968),
    ("fr-en", "dev"): (1_014, 1_014),
    ("fr-en", "test"): (1_000, 1_000),
    ("fr-en", "flores"): (1_012, 1_012),
    ("fr-en", "newstest2014"): (3_003, 3_003),
    ("de-en", "newstest2014"): (3_003, 3_003),
    ("cs-en", "train"): (29_000, 28_967),
    ("cs-en", "test"): (1_000, 1_000),
    ("ro-en", "train"): (9_999, 7_718),  # 10,000 lines, one with an empty English side
    ("ro-en", "dev"): (1_999, 1_999),
    ("ro-en", "test"): (1_999, 1_999),
    ("ro-en", "flores"): (1_012, 1_012),
}


@pytest.mark.parametrize(("task", "split"), list(REAL_COUNTS))
def test_real_counts(real_data_dir: Path, task: str, split: str) -> None:
    loaded = load_task(task, split, real_data_dir)
    assert (len(loaded.examples), len(loaded.items)) == REAL_COUNTS[task, split]
    assert sum(len(item.references) for item in loaded.items) <= len(loaded.examples)


def test_real_overnight_dev_is_a_tenth_of_train(real_data_dir: Path) -> None:
    train = load_task("overnight", "train", real_data_dir).examples
    dev = load_task("overnight", "dev", real_data_dir).examples
    assert len(train) + len(dev) == 10_942
    # Row 10 of basketball_train.tsv, the first held-out row.
    assert dev[0] == Example(
        "( call SW.listValue ( call SW.getProperty ( ( lambda s ( call SW.filter ( var s ) "
        "( string position ) ( string != ) en.position.point_guard ) ) "
        "( call SW.domain ( string player ) ) ) ( string player ) ) )",
        "player who does not play point guard",
    )
    assert dev[0] not in train


@pytest.mark.parametrize(
    ("split", "without_e2e"), [("train", 62_659 - 33_482), ("dev", 6_980 - 4_290), ("test", 12_551 - 4_690)]
)
def test_real_dart_exclude_e2e(real_data_dir: Path, split: str, without_e2e: int) -> None:
    assert len(load_task("dart", split, real_data_dir, exclude_e2e=True).examples) == without_e2e


def test_real_e2e_first_item(real_data_dir: Path) -> None:
    item = load_task("e2e", "dev", real_data_dir, limit=1).items[0]
    assert item.source == "name[Alimentum], area[city centre], familyFriendly[no]"
    assert (
        item.references[0] == "There is a place in the city centre, Alimentum, that is not family-friendly."
    )


def test_real_books(real_data_dir: Path) -> None:
    books = load_books(real_data_dir)
    assert len(books) == 163
    assert sum(len(text.split()) for _, text in books) == 8_200_190
