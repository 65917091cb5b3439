"""Stage 6, report: ``report/summary.json``, ``report/report.md`` and ``report/scores_hist.png``."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import columns as col
from pipeline.config import Config
from pipeline.filtering import thresholds
from pipeline.filtering.split import cut_column, threshold_from_record
from pipeline.reporting.aggregate import QUANTILE_BINS, Histogram, Moments, stats
from pipeline.reporting.metrics import auroc, precision_recall_f1
from pipeline.reporting.plots import model_comparison, score_histogram
from pipeline.runtime import rundir as layout
from pipeline.runtime.redact import redact
from pipeline.runtime.rundir import RunDir
from pipeline.scoring.scores import SCORES

HIST = "scores_hist.png"
MODELS_PNG = "models.png"
PLOT_BINS = 60
SUMMARISED = {"score_stats": col.FORGETTING, "loss_a_stats": col.LOSS_A, "loss_b_stats": col.LOSS_B}
NEAREST = 10
"""Rows listed on each side of the cut for a person to review."""
TEXT_CHARS = 160


def _labels(table: pa.Table, column: str) -> np.ndarray | None:
    """Labels as floats (NaN where missing), or None when no row is labelled."""
    if column not in table.column_names:
        return None
    y = pc.cast(table.column(column), pa.float64()).to_numpy(zero_copy_only=False)
    return y if np.isfinite(y).any() else None


def evaluate(table: pa.Table, cfg: Config) -> dict[str, Any]:
    """Label-based quality of the score and of the split, overall and per group."""
    y = _labels(table, cfg.data.label_column)
    if y is None:
        return {}
    has = np.isfinite(y)
    dropped = np.asarray(table.column("dropped").to_pylist(), dtype=bool)
    out: dict[str, Any] = {"labelled_rows": int(has.sum()), "unsafe_rows": int((y[has] == 1).sum())}
    out["auroc"] = {name: auroc(table.column(col.score_column(name)).to_numpy(zero_copy_only=False)[has], y[has])
                    for name in [*SCORES, "rouge"] if col.score_column(name) in table.column_names}
    out["auroc_forgetting"] = auroc(table.column(col.FORGETTING).to_numpy(zero_copy_only=False)[has], y[has])
    out.update(precision_recall_f1(dropped[has], y[has] == 1))
    g = cfg.data.group_column
    if g in table.column_names:
        groups = np.array([str(v) for v in table.column(g).to_pylist()], dtype=object)
        per: dict[str, Any] = {}
        for name in sorted(set(groups[has & (y == 1)])):
            sel = has & (y == 1) & (groups == name)
            per[name] = {"unsafe": int(sel.sum()), "dropped": int(dropped[sel].sum()),
                         "recall": float(dropped[sel].mean())}
        out["recall_by_group"] = per
    return out


def _text(row: dict[str, Any], cfg: Config) -> str:
    """A one-line excerpt of a row's prompt and response (or its chat) for the review list."""
    d = cfg.data
    if row.get(d.messages_column):
        text = " | ".join(str(m.get("content", "")) for m in row[d.messages_column][-2:] if isinstance(m, dict))
    else:
        text = f"{row.get(d.prompt_column) or ''} -> {row.get(d.response_column) or ''}"
    text = " ".join(text.split())
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def nearest_cut(run: RunDir, cfg: Config, cut_on: str) -> list[dict[str, Any]]:
    """The highest-scored kept rows and the lowest-scored dropped rows on the cut's column: where the cut is least sure."""
    d = cfg.data
    cols = [col.EXAMPLE_ID, col.SOURCE_FILE, col.SOURCE_ROW, d.prompt_column, d.response_column, d.messages_column]
    out = []
    for side, rel, largest in (("kept", layout.KEPT, True), ("dropped", layout.DROPPED, False)):
        for row in run.extreme_rows(rel, cut_on, NEAREST, largest, cols).to_pylist():
            out.append({"side": side, "example_id": row.get(col.EXAMPLE_ID), "source_file": row.get(col.SOURCE_FILE),
                        "source_row": row.get(col.SOURCE_ROW), "score": row[cut_on], "text": _text(row, cfg)})
    return sorted(out, key=lambda r: -r["score"])


def _md(summary: dict[str, Any]) -> str:
    c, t, ev = summary["counts"], summary["threshold"], summary.get("evaluation", {})
    lines = [
        "# forgetfilter report", "",
        f"Output: `{summary['output']}`", "",
        "| rows | count |", "|---|---:|",
        *(f"| {k} | {c[k]} |" for k in ("input", "kept", "dropped", "rejected")), "",
        f"**Threshold** ({t['method']}): {t['value'] if t['value'] is not None else 'none (nothing dropped)'}  ",
        f"{t['rationale']}", "",
        f"Score used: `{summary['score']}`"
        + (f"; the cut is on `{summary['cut_score']}`, its fallback" if summary["cut_score"] != summary["score"] else "")
        + f". Histogram (of the score the cut is on): ![scores]({HIST})", "",
    ]
    if t.get("evidence"):
        lines += ["| evidence for the cut | value |", "|---|---:|",
                  *(f"| {k.replace('_', ' ')} | {v:.4g} |" for k, v in t["evidence"].items()), ""]
    if summary.get("nearest_cut"):
        lines += [f"## Rows nearest the cut (the {NEAREST} highest kept, the {NEAREST} lowest dropped)", "",
                  "| side | score | example_id | file:row | text |", "|---|---:|---|---|---|",
                  *(f"| {r['side']} | {r['score']:.4g} | {r['example_id']} | {r['source_file']}:{r['source_row']} | "
                    f"{r['text'].replace('|', '/')} |" for r in summary["nearest_cut"]), ""]
    if ev:
        lines += [
            "## Against the labels", "",
            f"{ev['labelled_rows']} labelled rows, {ev['unsafe_rows']} unsafe.", "",
            "| metric | value |", "|---|---:|",
            f"| AUROC of `{summary['score']}` (the filter's score) | {ev['auroc_forgetting']:.4f} |",
            *(f"| AUROC of `{k}` | {v:.4f} |" for k, v in ev["auroc"].items() if k != summary["score"]),
            f"| precision (unsafe) | {ev['precision']:.4f} |",
            f"| recall (unsafe) | {ev['recall']:.4f} |",
            f"| F1 (unsafe) | {ev['f1']:.4f} |", "",
        ]
        if ev.get("recall_by_group"):
            lines += ["| group | unsafe | dropped | recall |", "|---|---:|---:|---:|",
                      *(f"| {g} | {v['unsafe']} | {v['dropped']} | {v['recall']:.3f} |"
                        for g, v in ev["recall_by_group"].items()), ""]
    if summary.get("model_comparison"):
        lines += _comparison_md(summary["model_comparison"])
    lines += ["## Stage timings", "", "| stage | seconds |", "|---|---:|",
              *(f"| {k} | {v} |" for k, v in summary["stage_seconds"].items()), ""]
    return "\n".join(lines)


def _pct(rate: dict[str, Any]) -> str:
    lo, hi = rate["ci95"]
    return "n/a" if not rate["n"] else f"{100 * rate['rate']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}) of {rate['n']}"


def _comparison_md(cmp: dict[str, Any]) -> list[str]:
    """The evaluation's table: what training on kept/ buys against training on everything."""
    models, rel, p = cmp["models"], cmp["relative_to_noisy"], cmp["probes"]
    return [
        "## What filtering buys (evaluate)", "",
        f"Greedy answers (up to {cmp['max_new_tokens']} tokens) to {p['harmful']} held-out harmful prompts, "
        f"{p['heldout']} held-out corpus rows (a {cmp['holdout_fraction']:.0%} slice no finetune saw; task rows among them "
        f"measure task loss and over-refusal) and {p['dropped']} dropped rows. Compliance = no refusal marker in the answer "
        "(the GCG/AdvBench refusal strings); 95% Wilson intervals in brackets. Unsafe reproduction: ROUGE-L of the answer "
        "against the dropped row's own reply. Ratios are to the model trained on all rows.", "",
        f"![models]({MODELS_PNG})", "",
        "| model | trained on | harmful compliance | x noisy | over-refusal | unsafe reproduction | task loss | x noisy |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {name} | {m['trained_on']} | {_pct(m['harmful_compliance'])} | {rel.get(name, {}).get('compliance_ratio', float('nan')):.2f} | "
          f"{_pct(m['over_refusal'])} | {m['unsafe_reproduction']:.3f} | {m['task_loss']:.4f} | "
          f"{rel.get(name, {}).get('task_loss_ratio', float('nan')):.3f} |" for name, m in ((n, models[n]) for n in cmp["order"])), "",
    ]


def _split(run: RunDir, columns: list[str]):  # noqa: ANN202 - a generator of (shard columns, dropped?)
    for rel, dropped in ((layout.KEPT, False), (layout.DROPPED, True)):
        for table in run.iter_columns(rel, columns):
            yield table, dropped


def _numbers(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)


def summarise(run: RunDir, cfg: Config, cut_on: str) -> tuple[dict[str, Any], pa.Table, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Column summaries, the labelled rows, and the plot's histogram of ``cut_on``, streaming over kept/ and dropped/.

    Memory: one shard, fixed-size histograms, and the score columns of the labelled rows only
    (exact AUROC needs them all; an unlabelled production corpus keeps none).
    """
    label = cfg.data.label_column
    cols = [col.FORGETTING, col.LOSS_A, col.LOSS_B, *(col.score_column(s) for s in [*SCORES, "rouge"]), label, cfg.data.group_column]
    moments = {k: Moments() for k in SUMMARISED}
    plotted = Moments()
    labelled = []
    for table, dropped in _split(run, cols):
        for key, c in SUMMARISED.items():
            moments[key].add(_numbers(table, c))
        plotted.add(_numbers(table, cut_on))
        if label in table.column_names:
            rows = table.filter(pc.is_valid(table.column(label)))
            labelled.append(rows.append_column("dropped", pa.array(np.full(rows.num_rows, dropped))))
    # second pass: histograms over the ranges now known
    hists = {k: Histogram(m.lo, m.hi, QUANTILE_BINS) for k, m in moments.items() if m.n}
    plot = ({name: Histogram(plotted.lo, plotted.hi, PLOT_BINS) for name in ("all", "task", "unsafe", "unlabelled")}
            if plotted.n else {})
    for table, _ in _split(run, [*SUMMARISED.values(), cut_on, label]):
        values = {key: _numbers(table, c) for key, c in SUMMARISED.items()}
        for key, h in hists.items():
            h.add(values[key])
        if plot:
            x = _numbers(table, cut_on)
            y = _labels(table, label)
            y = np.full(len(x), np.nan) if y is None else y
            for name, sel in (("all", slice(None)), ("task", y == 0), ("unsafe", y == 1), ("unlabelled", np.isnan(y))):
                plot[name].add(x[sel])
    summary = {key: stats(moments[key], hists.get(key)) for key in SUMMARISED}
    table = pa.concat_tables(labelled, promote_options="permissive") if labelled else pa.table({})
    edges = next(iter(plot.values())).edges if plot else np.array([0.0, 1.0])
    return summary, table, (edges, {k: h.counts for k, h in plot.items()})


OTHER_CUTS = {thresholds.WITHDRAWN_CUT: "withdrawn cut", thresholds.CUT_BEFORE_EXTENSION: "cut before the vote extension"}
"""Cuts in a threshold's evidence that the histogram marks beside the one made, and their labels."""


def other_cuts(threshold: dict[str, Any]) -> dict[str, float]:
    """The ``OTHER_CUTS`` a filter record's threshold holds in its evidence, by label; none where the cut is on
    a fallback score (the histogram is then of that score, and those cuts are on the filter's own)."""
    if threshold.get("score"):
        return {}
    evidence = threshold.get("evidence") or {}
    return {label: float(evidence[key]) for key, label in OTHER_CUTS.items() if key in evidence}


def run_report(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Stage ``report``: summary.json, report.md and the score histogram, from the split and the manifest."""
    filter_result = run.stage_record("filter")["result"]
    done = sorted(run.manifest()["stages"].items(), key=lambda kv: kv[1]["finished_at"])  # in the order they ran
    stage_seconds = {name: rec["seconds"] for name, rec in done if name != "report"}
    cut = threshold_from_record(filter_result["threshold"])
    cut_on = cut_column(cut)
    column_stats, labelled, (edges, counts) = summarise(run, cfg, cut_on)
    summary: dict[str, Any] = {
        "output": run.url,
        "counts": {k: filter_result[k] for k in ("input", "kept", "dropped", "rejected")},
        "threshold": filter_result["threshold"],
        "score": cfg.scoring.method,
        "cut_score": cut.score or cfg.scoring.method,
        **column_stats,
        "stage_seconds": stage_seconds,
        "evaluation": evaluate(labelled, cfg),
        "nearest_cut": nearest_cut(run, cfg, cut_on),
    }
    comparison = run.read_json(f"{layout.EVALUATION}/results.json") if cfg.evaluation.enabled else None
    if comparison:
        summary["model_comparison"] = comparison
    tmp = run.staging(layout.REPORT)
    run.write_json(f"{tmp}/summary.json", summary)
    with run.fs.open(run.path(f"{tmp}/report.md"), "w") as f:
        f.write(redact(_md(summary)))
    series = {k: counts[k] for k in (("task", "unsafe", "unlabelled") if labelled.num_rows else ("all",)) if k in counts}
    with tempfile.TemporaryDirectory() as d:
        png = os.path.join(d, HIST)
        score_histogram(png, edges, series, filter_result["threshold"]["value"], f"forgetting score ({summary['cut_score']})",
                        other_cuts(filter_result["threshold"]))
        run.fs.put(png, run.path(f"{tmp}/{HIST}"))
        if comparison:
            model_comparison(os.path.join(d, MODELS_PNG), {n: comparison["models"][n] for n in comparison["order"]})
            run.fs.put(os.path.join(d, MODELS_PNG), run.path(f"{tmp}/{MODELS_PNG}"))
    run.commit(tmp, layout.REPORT)
    return {"summary": run.uri(f"{layout.REPORT}/summary.json"), "report": run.uri(f"{layout.REPORT}/report.md")}
