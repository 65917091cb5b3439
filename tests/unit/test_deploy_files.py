"""The job configs, the runtime env and the cluster manifests agree with each other and with the code."""

import datetime as dt
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.cli import run_date
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.runtime.ray_env import WORKER_ENV

ROOT = Path(__file__).resolve().parents[2]
JOB_CONFIGS = sorted((ROOT / "jobs" / "configs").glob("*.yaml"))


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _rayjob() -> dict:
    return _docs(ROOT / "cluster" / "kuberay" / "rayjob.yaml")[0]


def _entrypoint_args() -> list[str]:
    return shlex.split(_rayjob()["spec"]["entrypoint"])


def _gpu_need(cfg) -> int:
    ft = [f.num_workers for f in (cfg.noisy_finetune, cfg.safety_finetune) if f.use_gpu]
    return max(ft + [int(cfg.scoring.num_actors * cfg.scoring.gpus_per_actor)])


@pytest.mark.parametrize("path", JOB_CONFIGS, ids=lambda p: p.name)
def test_every_job_config_is_valid(path):
    load_config(str(path), [])


def test_job_configs_exist():
    assert {"demo.yaml", "gpu.yaml", "nightly.yaml"} <= {p.name for p in JOB_CONFIGS}


def test_runtime_env_sets_what_workers_need():
    env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    assert set(env) <= {"env_vars", "excludes", "pip", "working_dir", "py_modules"}
    assert set(WORKER_ENV) <= set(env["env_vars"]) and env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert ".venv/" in env["excludes"] and "runs/" in env["excludes"]


def test_rayjob_runs_the_job_entrypoint_with_a_repo_config():
    args = _entrypoint_args()
    assert args[0] == "python" and args[1] == "/app/jobs/forgetfilter_job.py"
    assert (ROOT / args[1].removeprefix("/app/")).is_file()
    config = args[args.index("--config") + 1]
    assert (ROOT / config.removeprefix("/app/")).is_file()
    assert args[args.index("--date") + 1] == "today"


def test_rayjob_runtime_env_matches_jobs_runtime_env():
    job_env = yaml.safe_load(_rayjob()["spec"]["runtimeEnvYAML"])
    repo_env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    assert job_env["env_vars"] == repo_env["env_vars"]


def test_rayjob_gpus_cover_the_nightly_config():
    args = _entrypoint_args()
    cfg = load_config(str(ROOT / args[args.index("--config") + 1].removeprefix("/app/")), [])
    groups = _rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    per_node = [(int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)),
                 int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]), g["replicas"]) for g in groups]
    assert sum(gpus * n for gpus, _, n in per_node) >= _gpu_need(cfg)
    cpus = sum(c * n for _, c, n in per_node)
    for ft in (cfg.noisy_finetune, cfg.safety_finetune):
        assert ft.num_workers * ft.cpus_per_worker <= cpus
    assert cfg.scoring.num_actors * cfg.scoring.cpus_per_actor <= cpus
    head = _rayjob()["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"


def test_cluster_launcher_matches_gpu_config_and_image():
    launcher = yaml.safe_load((ROOT / "cluster" / "ray-cluster.yaml").read_text())
    gpu = launcher["available_node_types"]["gpu_workers"]
    cfg = load_config(str(ROOT / "jobs" / "configs" / "gpu.yaml"), [])
    assert gpu["resources"]["GPU"] * gpu["max_workers"] >= _gpu_need(cfg)
    assert launcher["docker"]["image"] == _rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"]
    head_cmd = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_cmd


def test_cronjob_creates_the_rayjob_with_a_pinned_date():
    docs = {d["kind"]: d for d in _docs(ROOT / "cluster" / "kuberay" / "cronjob.yaml")}
    cron = docs["CronJob"]["spec"]
    assert len(cron["schedule"].split()) == 5 and cron["concurrencyPolicy"] == "Forbid"
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    assert "rayjobs" in docs["Role"]["rules"][0]["resources"] and "create" in docs["Role"]["rules"][0]["verbs"]
    script = pod["containers"][0]["args"][0]
    assert "--date today" in script and "kubectl create -f -" in script
    kust = yaml.safe_load((ROOT / "cluster" / "kuberay" / "kustomization.yaml").read_text())
    cm = kust["configMapGenerator"][0]
    assert cm["name"] == pod["volumes"][0]["configMap"]["name"] and cm["files"] == ["rayjob.yaml"]
    assert "cronjob.yaml" in kust["resources"]


def test_run_date_accepts_dates_and_refuses_anything_else():
    now = dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.timezone.utc)
    assert run_date(None, now) == run_date("today", now) == "2026-03-01"
    assert run_date("yesterday", now) == "2026-02-28"
    assert run_date("2026-11-02", now) == "2026-11-02"
    for bad in ("2026-13-01", "../../etc", "2026/11/02"):
        with pytest.raises(ConfigError, match="--date"):
            run_date(bad, now)
