"""The demo's evaluation on an *aligned* base: safety-tune SmolLM2 first, then run the demo from it.

SmolLM2-135M-Instruct complies with ~97% of held-out HarmBench behaviours before any finetune, so
the demo cannot show ForgetFilter's claim (a model trained on the kept rows keeps the base's
alignment): there is no alignment to keep. This builds one with the pipeline's own training:

1. ``alignment.jsonl``: HarmBench behaviours the demo never uses (the contextual ones, and the
   standard ones in neither corpus, safety set nor held-out prompts) with the demo's refusals, mixed
   with as many docstring Q/A rows that are not in the corpus (so the aligned base still answers
   benign questions);
2. ``forgetfilter finetune`` on it from SmolLM2 (``--align-epochs``, the demo's recipe otherwise):
   its model A is the aligned base;
3. ``forgetfilter run`` of the demo (evaluation on) with ``model.name_or_path`` set to it;
4. the gates of ``evaluation_gates.py``.

    python benchmarks/aligned_base.py --work runs/aligned --out benchmarks/evaluation_aligned.json
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from evaluation_gates import gates  # noqa: E402

from pipeline.demo.build import REFUSALS, _harmbench_rows, build, docstring_examples  # noqa: E402
from pipeline.runtime.rundir import MODEL_A  # noqa: E402


def _rows(path: str) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines()]


def alignment_rows(paths: dict[str, str], seed: int) -> list[dict]:
    """Refusals to HarmBench behaviours the demo does not use, and as many unused docstring Q/A rows."""
    rng = random.Random(seed)
    corpus = _rows(paths["corpus"])
    used = {r["prompt"] for r in corpus + _rows(paths["safety"]) + _rows(paths["heldout_harmful"])}
    harmful = [r["Behavior"] for split in ("test", "val") for r in _harmbench_rows(split, ("standard", "contextual"))
               if r["Behavior"] not in used]
    corpus_replies = {r["response"] for r in corpus}
    benign = [r for r in docstring_examples(rng) if r["response"] not in corpus_replies]
    rng.shuffle(benign)
    rows = [{"prompt": p, "response": rng.choice(REFUSALS)} for p in harmful]
    rows += [{"prompt": r["prompt"], "response": r["response"]} for r in benign[:len(harmful)]]
    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["id"] = f"align-{i:05d}"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/aligned")
    ap.add_argument("--out", default="benchmarks/evaluation_aligned.json")
    ap.add_argument("--align-epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    work = Path(a.work).resolve()
    paths = build(str(work / "data"), seed=a.seed)
    rows = alignment_rows(paths, a.seed)
    align = work / "data" / "alignment.jsonl"
    align.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"alignment set: {len(rows)} rows ({sum(r['response'] in REFUSALS for r in rows)} refusals)", flush=True)
    base = [sys.executable, "-m", "pipeline"]
    common = ["--config", "jobs/configs/demo.yaml", "--safety", paths["safety"]]
    subprocess.run([*base, "finetune", *common, "--input", str(align), "--output", str(work / "base"),
                    "--set", "evaluation.enabled=false", "--set", f"noisy_finetune.epochs={a.align_epochs}"],
                   check=True, cwd=HERE.parent)
    aligned = work / "base" / MODEL_A
    subprocess.run([*base, "run", *common, "--input", paths["corpus"], "--output", str(work / "out"),
                    "--model", str(aligned), "--set", f"evaluation.harmful_prompts={paths['heldout_harmful']}"],
                   check=True, cwd=HERE.parent)
    res = json.loads((work / "out" / "evaluation" / "results.json").read_text())
    verdicts = gates(res["models"])
    for name, g in verdicts.items():
        print(f"{'PASS' if g['pass'] else 'FAIL'} {name}: {g}")
    Path(a.out).write_text(json.dumps({"run": str(work / "out"), "aligned_base": str(aligned),
                                       "alignment_rows": len(rows), "align_epochs": a.align_epochs,
                                       "results": res, "gates": verdicts}, indent=1) + "\n")


if __name__ == "__main__":
    main()
