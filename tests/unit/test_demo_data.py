"""The demo builder is seeded, and rebuilding unchanged data leaves the files (and the ingest fingerprint) alone."""

from __future__ import annotations

import os

from pipeline.demo.build import build


def test_rebuilding_the_same_demo_data_keeps_the_files_untouched(tmp_path):
    paths = build(str(tmp_path), n_task=20, n_unsafe=8, n_safety=8, seed=0)
    before = {k: (os.stat(p).st_mtime_ns, open(p, "rb").read()) for k, p in paths.items()}
    assert build(str(tmp_path), n_task=20, n_unsafe=8, n_safety=8, seed=0) == paths
    assert {k: (os.stat(p).st_mtime_ns, open(p, "rb").read()) for k, p in paths.items()} == before
    build(str(tmp_path), n_task=20, n_unsafe=8, n_safety=8, seed=1)
    assert open(paths["corpus"], "rb").read() != before["corpus"][1]
    assert not list(tmp_path.glob("*.tmp"))


def test_held_out_harmful_prompts_are_in_neither_the_corpus_nor_the_safety_set(tmp_path):
    import json

    paths = build(str(tmp_path), n_task=20, n_unsafe=8, n_safety=8, seed=0, n_heldout=50)
    prompts = {k: [json.loads(line)["prompt"] for line in open(p)] for k, p in paths.items()}
    assert len(prompts["heldout_harmful"]) == len(set(prompts["heldout_harmful"])) == 50
    assert not set(prompts["heldout_harmful"]) & (set(prompts["corpus"]) | set(prompts["safety"]))


def test_task_rows_do_not_depend_on_what_the_caller_imported(monkeypatch):
    # Importing torch replaces inspect.getfile (ray, inspect.isgenerator): the corpus built after them
    # must still be the one a fresh process builds, or a run cannot be rebuilt from its seed.
    import inspect
    import random

    from pipeline.demo.build import docstring_examples

    before = docstring_examples(random.Random(0))
    monkeypatch.setattr(inspect, "getfile", lambda obj: "")
    assert docstring_examples(random.Random(0)) == before
