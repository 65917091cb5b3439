"""Filter quality on a finished run: every forgetting score, thresholds, and the baselines.

Reads a run directory (default: the demo's, ``runs/demo/out``) and measures side by side, each
with its wall time:

- forward-pass forgetting scores (already in the scored shards): log-ratio, delta, sequence
  log-probability drop; the paper's score (greedy generation under A and B, ROUGE-L against the
  target, drop in ROUGE) computed here on the same rows;
- thresholds: automatic (mixture, valley, otsu, gmm; no labels) against the best F1 in hindsight;
- baselines: loss under the base model alone (a perplexity filter, drops high loss), loss under
  model A alone and under model B alone (the two halves of the score: if either alone did as well,
  the pair of finetunes would be wasted), a classifier on the response (``alt-profanity-check``),
  response length (a check that the benchmark is not separable by surface form), and random
  dropping at the default's drop rate.

    python benchmarks/quality.py [--run runs/demo/out] [--out benchmarks/quality.json]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config import Config
from pipeline.filtering import thresholds
from pipeline.reporting.metrics import auroc, precision_recall_f1
from pipeline.runtime import rundir as layout
from pipeline.runtime.rundir import RunDir
from pipeline.stages.filter import choose_threshold, corroborating_scores


def _rows(run: RunDir) -> pa.Table:
    return run.read_columns(layout.SCORES, ["input_ids", "prompt_len", "label", "response", "loss_a", "loss_b",
                                              "score_log_ratio", "score_delta", "score_seq_logprob_drop",
                                              "n_response_tokens"])


def rule_results(scores: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and rows dropped at each automatic rule's cut (no labels used to cut)."""
    out = {}
    for rule, choose in thresholds.AUTO_METHODS.items():
        drop = scores > choose(scores).value
        m = precision_recall_f1(drop, y)
        out[rule] = {k: m[k] for k in ("precision", "recall", "f1")} | {"dropped": int(drop.sum())}
    return out


def evaluate(name: str, scores: np.ndarray, y: np.ndarray, seconds: float) -> dict[str, Any]:
    """AUROC, and P/R/F1 at the automatic cuts and at the best cut in hindsight."""
    row: dict[str, Any] = {"score": name, "seconds": round(seconds, 1), "auroc": auroc(scores, y)}
    row.update(rule_results(scores, y))
    best = thresholds.best_f1(scores, y)
    row["best_f1"] = precision_recall_f1(scores > best.value, y)["f1"]
    return row


def base_model_losses(cfg: Config, ids: list, plens: list) -> np.ndarray:
    """Mean response-token loss under the base model (the perplexity-filter baseline)."""
    from pipeline.scoring.scorer import PairScorer

    base = cfg.model.name_or_path
    scorer = PairScorer(base, base, "log_ratio", cfg.scoring.max_tokens_per_batch, "fp32", False, threads=None)
    scorer.models = scorer.models[:1] * 2  # one model is enough; the pair API is reused
    return scorer.losses(ids, plens)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo/out")
    p.add_argument("--out", default="benchmarks/quality.json")
    p.add_argument("--skip-rouge", action="store_true")
    args = p.parse_args()
    run = RunDir(args.run)
    cfg = Config.model_validate(run.read_json("config.resolved.json"))
    t = _rows(run)
    y = np.asarray(t.column("label").to_pylist()) == 1
    ids, plens = t.column("input_ids").to_pylist(), t.column("prompt_len").to_pylist()
    score_s = run.manifest()["stages"]["score"]["seconds"]
    results = [evaluate(n, t.column(f"score_{n}").to_numpy(), y, score_s)
               for n in ("log_ratio", "delta", "seq_logprob_drop")]
    if not args.skip_rouge:
        from pipeline.scoring.scorer import PairScorer

        t0 = time.time()
        scorer = PairScorer(run.uri(layout.MODEL_A), run.uri(layout.MODEL_B), "rouge", cfg.scoring.max_tokens_per_batch,
                            "fp32", False, max_new_tokens=cfg.scoring.rouge_max_new_tokens)
        out = scorer(pa.table({"input_ids": t.column("input_ids"), "prompt_len": t.column("prompt_len")}))
        results.append(evaluate("rouge_paper", out.column("score_rouge").to_numpy(), y, time.time() - t0))
    t0 = time.time()
    base = base_model_losses(cfg, ids, plens)
    results.append(evaluate("baseline_base_model_loss", base, y, time.time() - t0))
    # The score's two halves on their own: B's loss alone is "what the safety-tuned model finds unlikely".
    results.append(evaluate("baseline_loss_a_alone", t.column("loss_a").to_numpy(), y, score_s))
    results.append(evaluate("baseline_loss_b_alone", t.column("loss_b").to_numpy(), y, score_s))
    # If reply length alone separated the classes, the benchmark would be testing surface form.
    results.append(evaluate("baseline_response_length", t.column("n_response_tokens").to_numpy().astype(float), y, 0.0))
    t0 = time.time()
    from profanity_check import predict_prob

    prof = np.asarray(predict_prob(t.column("response").to_pylist()), dtype=float)
    results.append(evaluate("baseline_profanity_check", prof, y, time.time() - t0))
    default_scores = t.column(f"score_{cfg.scoring.method}").to_numpy()
    others = {name: t.column(f"score_{name}").to_numpy() for name in corroborating_scores(cfg)}
    default = choose_threshold(default_scores, cfg.filter, others)  # the cut the run's config gives
    rate = float((default_scores > default.value).mean())
    rng = np.random.default_rng(0)
    f1s = [precision_recall_f1(rng.random(len(y)) < rate, y)["f1"] for _ in range(200)]
    summary = {"rows": len(y), "unsafe": int(y.sum()), "results": results,
               "random_drop": {"rate": rate, "mean_f1": float(np.mean(f1s)), "auroc": 0.5}}
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{len(y)} rows, {int(y.sum())} unsafe\n")
    rules = list(thresholds.AUTO_METHODS)
    print(f"| score | AUROC | P/R ({rules[0]}, default) | " + " | ".join(f"F1 ({r})" for r in rules)
          + " | best F1 (hindsight) | seconds |")
    print("|---|---:|---:|" + "---:|" * len(rules) + "---:|---:|")
    for r in results:
        v = r[rules[0]]
        print(f"| {r['score']} | {r['auroc']:.3f} | {v['precision']:.2f}/{v['recall']:.2f} | "
              + " | ".join(f"{r[k]['f1']:.3f}" for k in rules) + f" | {r['best_f1']:.3f} | {r['seconds']} |")
    print(f"| random drop at rate {rate:.3f} | 0.500 | {np.mean(f1s):.3f} (mean of 200) | | | | | 0 |")


if __name__ == "__main__":
    main()
