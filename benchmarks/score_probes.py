"""Probes for a better forgetting score than one mean loss per model, on runs whose models are kept.

``benchmarks/threshold_runs.py`` keeps each run's models A and B under ``--work``. For such runs
this script re-scores the corpus token by token under the base model, A and B, and trains one
control model C (A finetuned on the safety set's refusals under an empty prompt, with the safety
finetune's settings): C is a null for the drift that any short finetune on refusal text causes,
so log(B / C) would keep only the forgetting the harmful prompts cause. It prints the AUROC of
each candidate against the labels, beside ``log_ratio`` and ``delta``; nothing here is used by
the pipeline. Results: ``benchmarks/RESULTS.md``, "Automatic threshold".

``--probe refusal`` asks the prompt side instead: how much likelier B finds *refusing* each row's
prompt than A does (the NLL of a few of the safety set's refusal replies after the row's prompt,
under A minus under B). The safety finetune teaches exactly that on harmful prompts, whether or
not A ever learned the unsafe reply, so it may hold where forgetting is weak; a task sub-type
that merely drifts (the calendar answers) has no reason to be refused. It cannot see unsafe
replies to harmless prompts (biased or toxic completions), so it is probed as a second signal
beside ``log_ratio`` (the sum of their robust z-scores), not as a replacement. The gain turned out
backwards (B learns the refusal strings after every prompt); the level under B, -NLL_B, is the
signal that held. Each run's per-row numbers go to ``RUN_DIR/refusal_probe.json`` (copies:
``benchmarks/refusal_probe/``).

``--probe prompts`` computes, for runs made before the score stage kept them, B's prompt states
exactly as the score stage does (``scoring.scorer.losses_and_states``, the same projection) for the
corpus and the safety set, and writes them into the run's ``threshold_data`` file, so
``benchmarks/thresholds.py`` can apply the ``safety_prompts`` corroboration to it.

``--probe replies`` does the same for B's states of the rows' replies read as prompts
(``scoring.scorer.reply_prompts`` and ``last_token_states``, as the score stage computes them when
``filter.corroborate`` asks for ``reply_prompts``): ``reply_state`` per row in the ``threshold_data`` file.

    python benchmarks/score_probes.py [--probe tokens|refusal|prompts|replies] RUN_DIR [RUN_DIR ...]   # RUN_DIR: --work/<run name>
    python benchmarks/score_probes.py --backfill RUN_DIR ...   # refusal_probe.json -> threshold_data/, as `refusal`
    python benchmarks/score_probes.py --probe prompts RUN_DIR ...   # B's prompt states -> threshold_data/
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from threshold_runs import rounded  # noqa: E402

from pipeline import columns as col  # noqa: E402
from pipeline.filtering.prompts import cut_share  # noqa: E402
from pipeline.filtering.thresholds import mixture  # noqa: E402
from pipeline.models.loading import load_model, load_tokenizer, resolve_model  # noqa: E402
from pipeline.models.response_lm import ResponseLM  # noqa: E402
from pipeline.reporting.metrics import auroc, precision_recall_f1  # noqa: E402
from pipeline.scoring.scorer import last_token_states, losses_and_states, prompt_projection, reply_prompts  # noqa: E402
from pipeline.scoring.scores import REFUSAL, delta, log_ratio  # noqa: E402
from pipeline.text.formatting import collate, encode_batch, token_budget_batches  # noqa: E402
from pipeline.training.deepspeed_config import warmup_linear  # noqa: E402


def token_nll(model: ResponseLM, ids: list[list[int]], prompt_lens: list[int]) -> list[np.ndarray]:
    """Each row's response-token NLLs (fp32, no autocast: the probes compare small differences)."""
    out: list[np.ndarray] = [np.zeros(0)] * len(ids)
    for group in token_budget_batches([len(x) for x in ids], 8192):
        t = collate([ids[i] for i in group], [prompt_lens[i] for i in group], 0)
        with torch.inference_mode():
            nll, rows = model(t["input_ids"], t["attention_mask"], t["labels"])
        nll, rows = nll.numpy(), rows.numpy()
        for j, i in enumerate(group):
            out[i] = nll[rows == j]
    return out


def finetune(path: str, ids: list[list[int]], prompt_lens: list[int], cfg: dict) -> ResponseLM:
    """The safety finetune's recipe (AdamW, warm-up then linear decay), in plain torch on one process."""
    torch.manual_seed(0)
    model = ResponseLM(load_model(path))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    steps = cfg["epochs"] * math.ceil(len(ids) / cfg["batch_size"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_linear(s, steps, cfg["warmup_ratio"]))
    rng = np.random.default_rng(0)
    for _ in range(cfg["epochs"]):
        order = rng.permutation(len(ids))
        for s in range(0, len(ids), cfg["batch_size"]):
            g = order[s:s + cfg["batch_size"]]
            t = collate([ids[i] for i in g], [prompt_lens[i] for i in g], 0)
            loss = model(t["input_ids"], t["attention_mask"], t["labels"])[0].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


def candidates(base: list[np.ndarray], a: list[np.ndarray], b: list[np.ndarray], c: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-row scores: the two in the pipeline, and the probes."""
    la, lb, l0, lc = (np.array([x.mean() for x in v]) for v in (a, b, base, c))
    n = np.array([len(x) for x in a], float)
    up = [np.clip(y - x, 0, None) for x, y in zip(a, b)]
    return {
        "log_ratio": log_ratio(la, lb, n),
        "delta": delta(la, lb, n),
        "learned share forgotten (B-A)/(base-A)": (lb - la) / np.maximum(l0 - la, 1e-3),
        "per-token rise / per-token learning": np.array([u.sum() / max(np.clip(z - x, 0, None).sum(), 1e-3)
                                                         for u, x, z in zip(up, a, base)]),
        "share of tokens rising > 1 nat": np.array([np.mean(y - x > 1.0) for x, y in zip(a, b)]),
        "paired t of token rises": np.array([(y - x).mean() / ((y - x).std() + 1e-3) * math.sqrt(len(x)) for x, y in zip(a, b)]),
        "mean token rise / loss A": np.array([u.mean() for u in up]) / la,
        "log(B / C), C = control finetune": log_ratio(lc, lb, n),
        "B - C": delta(lc, lb, n),
    }


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (IQR / 1.349): z-scores set by the bulk (task) rows, not by the unsafe tail."""
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return (x - med) / max((q3 - q1) / 1.349, 1e-9)


REFUSALS = 4
"""Refusal replies from the safety set scored after every prompt (their mean), for a steadier number than one."""


def refusal_nll(model: ResponseLM, ids: list[list[int]], prompt_lens: list[int], refusals: list[list[int]]) -> np.ndarray:
    """Each row's mean NLL of the refusal replies' tokens following the row's own prompt."""
    seqs = [x[:p] + r for x, p in zip(ids, prompt_lens) for r in refusals]
    nll = token_nll(model, seqs, [p for p in prompt_lens for _ in refusals])
    return np.array([v.mean() for v in nll]).reshape(len(ids), len(refusals)).mean(axis=1)


def refusal_probe(run: Path) -> dict[str, float]:
    """AUROC, and `mixture`'s F1 and task rows dropped, for ``log_ratio``, the refusal signals and their robust-z sums."""
    corpus, safety, y = _tables(run)
    ids, pls = corpus.column("input_ids").to_pylist(), corpus.column("prompt_len").to_pylist()
    s_ids, s_pls = safety.column("input_ids").to_pylist(), safety.column("prompt_len").to_pylist()
    pick = np.random.default_rng(0).choice(len(s_ids), REFUSALS, replace=False)
    refusals = [s_ids[i][s_pls[i]:] for i in pick]
    models = {k: ResponseLM(load_model(str(run / "out" / "models" / d))).eval() for k, d in (("a", "noisy"), ("b", "safety"))}
    ref_a, ref_b = (refusal_nll(models[k], ids, pls, refusals) for k in ("a", "b"))
    # The pipeline already wrote each row's mean response loss under A and B: no second pass over the corpus.
    scores = pq.read_table(run / "out" / "work" / "scores", columns=["id", col.LOSS_A, col.LOSS_B]).to_pylist()
    by_id = {r["id"]: (r[col.LOSS_A], r[col.LOSS_B]) for r in scores}
    la, lb = np.array([by_id[i] for i in corpus.column("id").to_pylist()]).T
    lr = log_ratio(la, lb, np.ones(len(la)))
    (run / "refusal_probe.json").write_text(json.dumps({"label": y.tolist(), "log_ratio": lr.tolist(),
                                                        "refusal_nll_a": ref_a.tolist(), "refusal_nll_b": ref_b.tolist()}))
    out = {}
    gain = ref_a - ref_b
    for name, x in (("log_ratio", lr), ("refusal gain A - B", gain), ("z(log_ratio) + z(refusal gain)", robust_z(lr) + robust_z(gain)),
                    ("B's refusal likelihood -NLL_B", -ref_b), ("z(log_ratio) + z(-NLL_B)", robust_z(lr) + robust_z(-ref_b))):
        drop = x > mixture(x).value
        out |= {f"AUROC {name}": auroc(x, y), f"F1 of `mixture` on {name}": precision_recall_f1(drop, y.astype(bool))["f1"],
                f"task rows `mixture` drops on {name}": float((drop & (y == 0)).sum())}
    return out


def backfill(run: Path) -> None:
    """Write a probed run's B refusal likelihoods into its ``threshold_data`` file as the ``refusal``
    score, for runs made before the score stage wrote it (the probe picks its 4 refusals with its own
    seed, so the values differ a little from the pipeline's)."""
    probe = json.loads((run / "refusal_probe.json").read_text())
    ids = _tables(run)[0].column("id").to_pylist()
    by_id = dict(zip(ids, (-np.array(probe["refusal_nll_b"])).tolist()))
    dest = Path(__file__).resolve().parent / "threshold_data" / f"{run.name}.json"
    data = json.loads(dest.read_text())
    for r in data["rows"]:
        r[REFUSAL] = by_id[r["id"]]
    data["refusal_from"] = "python benchmarks/score_probes.py --probe refusal"
    dest.write_text(json.dumps(data, indent=None) + "\n", encoding="utf-8")


def prompt_states_probe(run: Path) -> dict[str, float]:
    """B's prompt states for the corpus and the safety set, as the score stage now keeps them, written into
    the run's ``threshold_data`` file (``prompt_state`` per row, ``safety_prompt_states``); returns the share of
    the plain `mixture` cut's rows nearer the safety prompts, beside that cut's precision."""
    corpus, safety, y = _tables(run)
    model = ResponseLM(load_model(str(run / "out" / "models" / "safety"))).eval()
    projection = prompt_projection(model.lm.config.get_text_config().hidden_size)

    def states(t: pa.Table) -> np.ndarray:
        ids, pls = t.column("input_ids").to_pylist(), t.column("prompt_len").to_pylist()
        return losses_and_states([model], ids, pls, 8192, 0, torch.device("cpu"), contextlib.nullcontext(), projection)[2]

    x, s = states(corpus), states(safety)
    return _write_states(run, corpus, x, "prompt_state", "prompts", {"safety_prompt_states": [rounded(v.tolist()) for v in s]})


def reply_states_probe(run: Path) -> dict[str, float]:
    """B's states of the corpus rows' replies read as prompts, as the score stage keeps them, written into the
    run's ``threshold_data`` file (``reply_state`` per row); returns the share of the plain `mixture` cut's rows
    whose replies vote for the safety prompts, beside that cut's precision."""
    corpus, _, _ = _tables(run)
    path = str(run / "out" / "models" / "safety")
    model, tokenizer = ResponseLM(load_model(path)).eval(), load_tokenizer(path)
    projection = prompt_projection(model.lm.config.get_text_config().hidden_size)
    ids = reply_prompts(tokenizer, corpus.column("input_ids").to_pylist(), corpus.column("prompt_len").to_pylist())
    x = last_token_states(model, ids, 8192, tokenizer.pad_token_id, torch.device("cpu"), contextlib.nullcontext(), projection)
    return _write_states(run, corpus, x, "reply_state", "replies")


def _write_states(run: Path, corpus: pa.Table, x: np.ndarray, key: str, probe: str,
                  extra: dict | None = None) -> dict[str, float]:
    """Write the corpus rows' states ``x`` into the run's ``threshold_data`` file under ``key`` (and ``extra``), and
    return the share of the plain `mixture` cut's rows whose states vote for the safety prompts, beside its precision."""
    dest = Path(__file__).resolve().parent / "threshold_data" / f"{run.name}.json"
    data = json.loads(dest.read_text())
    by_id = dict(zip(corpus.column("id").to_pylist(), x))
    for r in data["rows"]:
        r[key] = rounded(by_id[r["id"]].tolist())
    data.update(extra or {})
    data[f"{key}s_from"] = f"python benchmarks/score_probes.py --probe {probe}"
    dest.write_text(json.dumps(data, indent=None) + "\n", encoding="utf-8")
    rows = data["rows"]
    lr = log_ratio(np.array([r["loss_a"] for r in rows]), np.array([r["loss_b"] for r in rows]), np.ones(len(rows)))
    value = mixture(lr).value
    cut = lr > value
    labels = np.array([r["label"] for r in rows], bool)
    share = cut_share([(lr, np.array([r[key] for r in rows]))], value, np.array(data["safety_prompt_states"]))
    return {"rows in the plain `mixture` cut": float(cut.sum()), f"share of them whose {probe} vote for the safety prompts": share,
            "precision of that cut": float(labels[cut].mean()) if cut.any() else math.nan}


def _tables(run: Path) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """A kept run's tokenised corpus and safety set (as the pipeline ingested them), and the corpus labels."""
    corpus = pq.read_table(next((run / "out" / "work" / "ingest").glob("*.parquet")))
    safety = pq.read_table(next((run / "out" / "work" / "safety").glob("*.parquet")))
    return corpus, safety, np.array(corpus.column("label").to_pylist(), float)


def probe(run: Path) -> dict[str, float]:
    cfg = json.loads((run / "out" / "config.resolved.json").read_text())
    corpus, safety, y = _tables(run)
    ids, pls = corpus.column("input_ids").to_pylist(), corpus.column("prompt_len").to_pylist()
    model_a = str(run / "out" / "models" / "noisy")
    nll = {k: token_nll(ResponseLM(load_model(p)).eval(), ids, pls)
           for k, p in (("base", resolve_model(cfg["model"]["name_or_path"])), ("a", model_a), ("b", str(run / "out" / "models" / "safety")))}
    chats = [[{"role": "user", "content": ""}, {"role": "assistant", "content": r}] for r in safety.column("response").to_pylist()]
    control = [e for e in encode_batch(load_tokenizer(model_a), chats, cfg["data"]["max_length"], True) if not isinstance(e, str)]
    c_model = finetune(model_a, [e.input_ids for e in control], [e.prompt_len for e in control], cfg["safety_finetune"])
    c = token_nll(c_model, ids, pls)
    return {name: auroc(x, y) for name, x in candidates(nll["base"], nll["a"], nll["b"], c).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probe", choices=("tokens", "refusal", "prompts", "replies"), default="tokens")
    ap.add_argument("--backfill", action="store_true", help="no model pass: write each run's refusal_probe.json into "
                    "threshold_data/ as the `refusal` score")
    a = ap.parse_args()
    if a.backfill:
        for run in a.runs:
            backfill(run)
        return
    torch.set_num_threads(a.threads)
    fn = {"tokens": probe, "refusal": refusal_probe, "prompts": prompt_states_probe, "replies": reply_states_probe}[a.probe]
    results = {run.name: fn(run) for run in a.runs}
    names = list(next(iter(results.values())))
    print("| score | " + " | ".join(results) + " |\n|---|" + "---:|" * len(results))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{r[n]:.3f}" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
