"""The embedded demo that ships in demo/: every adapter loads against the shipped base and writes text.

These read the real files in ``demo/``; a checkout without them (a trimmed copy) skips with a
message. The golden property is checked on the demo too: a batch mixing every shipped adapter
gives each row what that row gives alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import AdaptedModel, GenerationParams, load_adapter
from server.demo import DEMO_DIR, default_model_and_adapters

BASE = DEMO_DIR / "base"
ADAPTERS = DEMO_DIR / "adapters"
SHIPPED = ("e2e", "e2e-prompt", "dart", "overnight", "fr-en", "de-en")
EXAMPLES = {
    "e2e": "name[The Golden Palace], eatType[coffee shop], food[Italian], priceRange[cheap], area[riverside]",
    "e2e-prompt": "name[The Golden Palace], eatType[coffee shop], food[Italian], area[city centre]",
    "dart": "<H> The Golden Palace <R> food <T> Italian <H> The Golden Palace <R> area <T> riverside",
    "overnight": "( call SW.listValue ( call SW.filter ( call SW.getProperty ( call SW.singleton en.restaurant ) ( string !type ) ) ( string delivery ) ) )",
    "fr-en": "Un homme en chemise bleue joue de la guitare.",
    "de-en": "Ein Mann in einem blauen Hemd spielt Gitarre.",
}

pytestmark = pytest.mark.skipif(
    not (BASE / "config.json").is_file(), reason=f"the demo base is not in this checkout ({BASE})"
)


@pytest.fixture(scope="module")
def demo() -> AdaptedModel:
    model = AdaptedModel.load(BASE, device="cpu", dtype="float32", num_slots=len(SHIPPED))
    for slot, name in enumerate(SHIPPED, start=1):
        model.load_adapter_file(slot, ADAPTERS / f"{name}.safetensors")  # checks the fingerprint
    return model


def test_the_demo_is_the_embedded_default():
    assert default_model_and_adapters(Path("unused-cache")) == (BASE, ADAPTERS)


def test_every_listed_adapter_ships_and_names_the_shipped_base(demo):
    names = sorted(p.stem for p in ADAPTERS.glob("*.safetensors"))
    assert set(SHIPPED) <= set(names), f"missing: {set(SHIPPED) - set(names)}"
    for name in SHIPPED:
        weights = load_adapter(ADAPTERS / f"{name}.safetensors", demo.base.fingerprint, demo.base.d_model)
        expected = "prompt-tuning" if name == "e2e-prompt" else "input-tuning"
        assert weights.config.kind == expected
        assert weights.metadata.get("task"), f"{name} does not say which task it was trained on"


def test_the_demo_folder_stays_small():
    size = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert size < 60 * 2**20, f"demo/ holds {size / 2**20:.1f} MiB"


@pytest.fixture(scope="module")
def alone(demo) -> dict[str, str]:
    params = GenerationParams(max_new_tokens=48)
    return {
        name: demo.generate([EXAMPLES[name]], [slot], params)[0].text
        for slot, name in enumerate(SHIPPED, start=1)
    }


def test_each_adapter_writes_text(alone):
    for name, text in alone.items():
        assert text.strip(), f"{name} wrote nothing"
        assert len(set(text.split())) >= 3, f"{name} wrote {text!r}"


def test_e2e_describes_the_restaurant_it_is_given(alone):
    assert "Golden Palace" in alone["e2e"]


def test_adapters_change_what_the_base_writes(demo, alone):
    plain = demo.generate([EXAMPLES["fr-en"]], [0], GenerationParams(max_new_tokens=48))[0].text
    assert alone["fr-en"] != plain


def test_a_batch_mixing_every_demo_adapter_gives_each_row_its_own_output(demo, alone):
    names = list(SHIPPED) * 2
    slots = [SHIPPED.index(n) + 1 for n in names]
    outs = demo.generate([EXAMPLES[n] for n in names], slots, GenerationParams(max_new_tokens=48))
    assert [o.text for o in outs] == [alone[n] for n in names]


def test_the_demo_readme_reports_measured_scores():
    readme = (DEMO_DIR / "README.md").read_text()
    for name in SHIPPED:
        assert f"`{name}`" in readme
    assert "BLEU" in readme and Path("scripts/make_demo.sh").name in readme
