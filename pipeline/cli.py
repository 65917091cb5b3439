"""Command line: ``forgetfilter run`` and one subcommand per stage. The contract is stable.

Errors the user can fix print as one line on stderr (no traceback unless ``--debug``) with exit
code 2 (config or input) or 3 (a stage failed its checks). stderr carries that line and nothing
else: what Ray, DeepSpeed and the workers print goes to stdout with the progress, unless
``--verbose``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.config import Config, load_config, reference_yaml
from pipeline.errors import ConfigError, ForgetFilterError
from pipeline.runner import STAGE_NAMES, log, run_pipeline
from pipeline.runtime.redact import redact


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forgetfilter", description="Filter unsafe examples out of finetuning data by forgetting.")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    common.add_argument("--input", action="append", metavar="PATH", help="noisy corpus (repeatable); sets data.input")
    common.add_argument("--safety", action="append", metavar="PATH", help="safety set (repeatable); sets data.safety")
    common.add_argument("--output", metavar="DIR", help="output directory; sets output.dir")
    common.add_argument("--model", metavar="NAME_OR_PATH", help="base model; sets model.name_or_path")
    common.add_argument("--date", help="value of {date} in paths: YYYY-MM-DD, today or yesterday (UTC; default today)")
    common.add_argument("--verbose", action="store_true", help="leave Ray's own logs on stderr")
    common.add_argument("--debug", action="store_true", help="show tracebacks (implies --verbose)")
    sub.add_parser("run", parents=[common], help="run every stage, skipping those already complete")
    for name in STAGE_NAMES:
        if name == "evaluate":
            sub.add_parser(name, parents=[common], help="compare models trained with and without the filter (sets evaluation.enabled, "
                           "runs any stage not yet complete, re-runs evaluate, then the report)")
        else:
            sub.add_parser(name, parents=[common], help=f"(re-)run the {name} stage (and any incomplete stage before it)")
    sub.add_parser("config", help="print every config key with its default and documentation")
    demo = sub.add_parser("demo-data", help="build the demo corpus and safety set (stdlib docstrings + HarmBench)")
    demo.add_argument("--out", required=True, help="directory for corpus.jsonl and safety.jsonl")
    demo.add_argument("--seed", type=int, default=0)
    return p


def _config(args: argparse.Namespace) -> Config:
    overrides = list(args.set)
    if args.command == "evaluate":
        overrides.insert(0, "evaluation.enabled=true")
    if args.input:
        overrides.append(f"data.input={_yaml_list(args.input)}")
    if args.safety:
        overrides.append(f"data.safety={_yaml_list(args.safety)}")
    if args.output:
        overrides.append(f"output.dir={_yaml_str(args.output)}")
    if args.model:
        overrides.append(f"model.name_or_path={_yaml_str(args.model)}")
    cfg = load_config(args.config, overrides)
    return with_date(cfg, run_date(args.date))


def run_date(value: str | None, now: dt.datetime | None = None) -> str:
    """``{date}``: an ISO date, or ``today`` / ``yesterday`` (UTC, the default today).

    Anything else is refused: the value becomes part of input and output paths.
    """
    today = (now or dt.datetime.now(dt.timezone.utc)).date()
    if value in (None, "today"):
        return today.isoformat()
    if value == "yesterday":
        return (today - dt.timedelta(days=1)).isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--date: {value!r} is not YYYY-MM-DD, today or yesterday") from None


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _yaml_list(items: list[str]) -> str:
    return "[" + ", ".join(_yaml_str(s) for s in items) + "]"


def with_date(cfg: Config, date: str) -> Config:
    """Replace ``{date}`` in input and output paths, for scheduled nightly runs."""
    data = cfg.data.model_copy(update={
        "input": [p.replace("{date}", date) for p in cfg.data.input],
        "safety": [p.replace("{date}", date) for p in cfg.data.safety],
    })
    out = cfg.output.model_copy(update={"dir": cfg.output.dir.replace("{date}", date)})
    return cfg.model_copy(update={"data": data, "output": out})


@contextmanager
def stderr_on_stdout(enabled: bool) -> Iterator[None]:
    """Send everything written to file descriptor 2 to stdout while the pipeline runs.

    Ray logs from C++ (the core worker), from Python loggers whose handlers hold the original
    stderr, and from the thread that forwards every worker's output; DeepSpeed and transformers
    add their own. Only a redirect of the descriptor itself catches all of them, and it keeps them
    visible as part of the run's progress on stdout. A user or a scheduler reading stderr then finds
    the run's one-line error and nothing else; the descriptor is restored before that line is printed.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(1, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "config":
        sys.stdout.write(reference_yaml())
        return 0
    if args.command == "demo-data":
        from pipeline.demo.build import build

        for name, path in build(args.out, seed=args.seed).items():
            log(f"demo {name}: {path}")
        return 0
    try:
        cfg = _config(args)
        with stderr_on_stdout(not (args.verbose or args.debug)):
            try:
                if args.command == "run":
                    run = run_pipeline(cfg)
                elif args.command == "evaluate":
                    run = run_pipeline(cfg, force=("evaluate",))
                else:
                    run = run_pipeline(cfg, until=args.command, force=(args.command,))
            finally:
                from pipeline.runtime.ray_env import shutdown_ray

                shutdown_ray()
        if args.command in ("run", "report", "evaluate"):
            log(f"report: {run.uri('report/report.md')}")
        return 0
    except ForgetFilterError as err:
        if args.debug:
            traceback.print_exc()
        print(f"forgetfilter: error: {redact(str(err))}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("forgetfilter: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - last resort: one line unless --debug
        if args.debug or os.environ.get("FORGETFILTER_DEBUG"):
            traceback.print_exc()
        first = str(err).splitlines()[0] if str(err) else ""
        print(f"forgetfilter: error: {type(err).__name__}: {redact(first)} (re-run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
