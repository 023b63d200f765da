"""Hot swap: replacing an adapter while requests stream in gives old or new outputs, never a mix."""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest

from adapters import AdaptedModel, GenerationParams, load_adapter
from tests.conftest import TEXTS
from tests.server.conftest import write_adapter

PARAMS = {"max_new_tokens": 6}


def expected_outputs(model_dir, path, texts):
    model = AdaptedModel.load(model_dir / "base", device="cpu", num_slots=1)
    model.load_adapter(1, load_adapter(path))
    return [o.text for o in model.generate(texts, [1] * len(texts), GenerationParams(max_new_tokens=6))]


@pytest.mark.parametrize("how", ["disk", "put"])
def test_replace_while_streaming(live, model_dir, adapter_dir, tmp_path, how):
    texts = TEXTS[:6]
    old = expected_outputs(model_dir, adapter_dir / "e2e.safetensors", texts)
    base = AdaptedModel.load(model_dir / "base", device="cpu", num_slots=1).base
    staged = write_adapter(
        tmp_path / "staged", "e2e", base, "input-tuning", 9, seed=77
    )  # new prompt length too
    new = expected_outputs(model_dir, staged, texts)
    assert old != new
    seen: list[tuple[int, str, float]] = []
    errors: list[str] = []
    stop = threading.Event()

    with live(admin_api_key="k", max_wait_ms=5) as server:

        def stream(worker: int):
            with httpx.Client(base_url=server.url, timeout=30) as client:
                i = worker
                while not stop.is_set():
                    sent = time.monotonic()
                    r = client.post(
                        "/generate",
                        params={"adapter": "e2e"},
                        json={"inputs": texts[i % len(texts)], "parameters": PARAMS},
                    )
                    if r.status_code != 200:
                        errors.append(r.text)
                    else:
                        seen.append((i % len(texts), r.json()["generated_text"], sent))
                    i += 1

        workers = [threading.Thread(target=stream, args=(w,)) for w in range(4)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        if how == "disk":
            tmp = adapter_dir / ".e2e.tmp"
            tmp.write_bytes(staged.read_bytes())
            os.replace(tmp, adapter_dir / "e2e.safetensors")
        else:
            r = httpx.put(
                server.url + "/adapters/e2e",
                content=staged.read_bytes(),
                headers={"Authorization": "Bearer k"},
            )
            assert r.status_code == 201
        swapped = time.monotonic()
        time.sleep(0.7)
        stop.set()
        for w in workers:
            w.join(30)

    assert not errors, errors[:3]
    kinds = []
    for index, text, sent in seen:
        assert text in (old[index], new[index]), (index, text)
        kinds.append("new" if text == new[index] and text != old[index] else "old")
        if sent > swapped + 0.05:  # sent after the swap: must see the new version
            assert text == new[index] or new[index] == old[index]
    assert "old" in kinds and "new" in kinds
