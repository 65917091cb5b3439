"""Safe by default: no code from the model dir or the config is ever executed, local Ray stays on loopback,
credentials in URLs never reach logs or run metadata."""

import os
import subprocess
import sys

import pytest

from pipeline.config import Config, RayConfig, parse_override
from pipeline.errors import ConfigError
from pipeline.runtime.redact import redact


class _Payload:
    """Unpickling this would create a file: proof that a pickle was (not) loaded."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_weights_are_never_unpickled(tmp_path):
    import torch
    from transformers import LlamaConfig

    from pipeline.models.loading import load_model

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2).save_pretrained(model_dir)
    marker = tmp_path / "unpickled"
    torch.save({"payload": _Payload(str(marker))}, model_dir / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="model.name_or_path"):
        load_model(str(model_dir))
    assert not marker.exists()


def test_remote_code_is_opt_in():
    assert Config().model.trust_remote_code is False


def test_config_values_are_data_never_code(tmp_path):
    marker = tmp_path / "ran"
    key, value = parse_override(f"data.system_prompt=!!python/object/apply:os.system ['touch {marker}']")
    assert key == "data.system_prompt" and isinstance(value, str)
    assert not marker.exists()
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  system_prompt: !!python/object/apply:os.system ['touch {marker}']\n")
    from pipeline.config import load_config

    with pytest.raises(ConfigError):
        load_config(str(path), [])
    assert not marker.exists()


def test_embedded_ray_listens_on_loopback_only(monkeypatch):
    import ray

    from pipeline.runtime import ray_env

    seen = {}
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    ray_env.init_ray(RayConfig(num_cpus=2))
    assert seen["address"] == "local" and seen["dashboard_host"] == "127.0.0.1"
    assert seen["include_dashboard"] is False
    # workers get exactly these variables, nothing copied from the caller's environment (no secrets)
    assert seen["runtime_env"] == {"env_vars": ray_env.WORKER_ENV} and os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("url, shown", [
    ("https://alice:pw123@host/d/x.jsonl", "https://alice:***@host/d/x.jsonl"),
    ("s3://bucket/x.parquet?X-Amz-Signature=abc123&X-Amz-Credential=AKIA1&part=2",
     "s3://bucket/x.parquet?X-Amz-Signature=***&X-Amz-Credential=***&part=2"),
    ("abfs://c/x.csv?sv=2024&sig=zzz", "abfs://c/x.csv?sv=2024&sig=***"),
    ("error in /data/x.jsonl, row 3: column 'prompt': missing", "error in /data/x.jsonl, row 3: column 'prompt': missing"),
])
def test_credentials_in_urls_are_redacted(url, shown):
    assert redact(url) == shown


def test_credentials_never_reach_the_error_line_or_the_run_metadata(tmp_path):
    secret_url = "https://alice:S3CRETpw@127.0.0.1:9/x.jsonl?token=S3CRETtok"
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "pipeline", "run", "--input", secret_url, "--safety", secret_url,
                        "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "forgetfilter: error:" in r.stderr
    assert "S3CRET" not in r.stdout + r.stderr
    resolved = (out / "config.resolved.json").read_text()
    assert "alice:***@127.0.0.1" in resolved and "S3CRET" not in resolved
