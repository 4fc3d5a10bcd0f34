"""profiles/slurm on a real SLURM cluster: one node on this machine (scripts/slurm/start.sh), jobs through sbatch."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.test_workflow import SNAKEMAKE, TINY

PROFILE = REPO / "profiles" / "slurm"
# One pretraining and one fine-tuning after the data stages, and a figure of a rule that `localrules:` keeps on the
# submitting machine.
CONFIG = {**TINY, "pretrain": {**TINY["pretrain"], "runs": [{"variants": ["basic_cl"], "versions": ["original"]}]}}
TARGETS = ["out/eyeq/original/finetune/basic_cl/seed0/metrics.json", "out/figures/finetune_eyeq_original.png"]
SUBMITTED = {"synthesize", "preprocess", "index", "pretrain", "finetune"}
# Equal byte for byte between two runs on one machine with the same threads (the .pt archives are not).
DETERMINISTIC = [
    "out/eyeq/preprocessed/summary.json",
    "out/eyeq/original/index.parquet",
    "out/eyeq/original/summary.json",
    "out/eyeq/original/pretrain/basic_cl/training_log.csv",
    "out/eyeq/original/pretrain/basic_cl/summary.json",
    "out/eyeq/original/finetune/basic_cl/seed0/training_log.csv",
    "out/eyeq/original/finetune/basic_cl/seed0/predictions.parquet",
    "out/eyeq/original/finetune/basic_cl/seed0/metrics.json",
]
LIMIT_S = 600


@pytest.fixture(scope="module")
def cluster():
    """The cluster's partition and account; stopped afterwards if this fixture started it."""
    result = subprocess.run(["bash", str(REPO / "scripts/slurm/start.sh")], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"scripts/slurm/start.sh could not start a SLURM cluster:\n{result.stdout}\n{result.stderr}", pytrace=False)
    yield dict(pair.split("=") for pair in result.stdout.splitlines()[-1].split())
    if "] started " in result.stdout:
        subprocess.run(["bash", str(REPO / "scripts/slurm/stop.sh")], check=True)


def local_profile(folder: Path, cluster: dict[str, str], **defaults: str) -> Path:
    """profiles/slurm as this node can run it: its partition and account, no GPU (a job asking for one is refused), memory
    that fits, status checks from the first second, the SLURM logs of successful jobs kept. Given as the workflow profile,
    it overrides profiles/slurm key by key."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    small = {"gpu": 0, "mem_mb": 1000}
    overrides = {
        "cores": "all",  # the threads of a local run: equal outputs need equal threads
        "default-resources": {**profile["default-resources"], "mem_mb": 1000,
                              "slurm_partition": cluster["partition"], "slurm_account": cluster["account"], **defaults},
        "set-resources": {rule: {**resources, **small} for rule, resources in profile["set-resources"].items()},
        "slurm-init-seconds-before-status-checks": 1,
        "slurm-keep-successful-logs": True,
    }
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(overrides))
    return folder


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on the targets, stopped by SIGINT at the limit: SIGINT, unlike SIGTERM, makes it cancel its SLURM jobs."""
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    command = ["timeout", "-s", "INT", "-k", "60", str(LIMIT_S), *SNAKEMAKE, *TARGETS, "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(workdir / "tiny.yaml"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir)


def test_the_profile_sizes_only_rules_that_exist_and_gives_the_training_rules_a_gpu():
    rules = subprocess.run([*SNAKEMAKE, "--list-rules"], capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    sized = yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"]
    assert set(sized) <= set(rules)
    assert all(sized[rule]["gpu"] >= 1 for rule in ("train_detector", "pretrain", "finetune"))


@pytest.mark.slurm
def test_the_jobs_go_through_sbatch_and_give_what_a_local_run_gives(cluster, tmp_path):
    (tmp_path / "local").mkdir()
    local = run(tmp_path / "local", "--cores", "all")
    assert local.returncode == 0, local.stdout + local.stderr
    (tmp_path / "slurm").mkdir()
    profile = local_profile(tmp_path / "profile", cluster)
    result = run(tmp_path / "slurm", "--profile", str(PROFILE), "--workflow-profile", str(profile))
    assert result.returncode == 0, f"exit {result.returncode} (124: over {LIMIT_S} s)\n{result.stdout}\n{result.stderr}"

    folder = tmp_path / "slurm/.snakemake/slurm_logs"  # rule_<rule>/<wildcards>/<SLURM job id>.log
    logs = list(folder.glob("rule_*/**/*.log"))
    assert {log.relative_to(folder).parts[0] for log in logs} == {f"rule_{rule}" for rule in SUBMITTED}
    job_ids = [log.stem for log in logs]
    assert all(re.fullmatch(r"\d+", job_id) for job_id in job_ids), job_ids
    states = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", ",".join(job_ids)],
                            capture_output=True, text=True, check=True)
    assert states.stdout.split() == ["COMPLETED"] * len(job_ids)
    for path in DETERMINISTIC:
        assert (tmp_path / "slurm" / path).read_bytes() == (tmp_path / "local" / path).read_bytes(), path


@pytest.mark.slurm
def test_a_partition_that_does_not_exist_stops_the_run_with_sbatchs_message(cluster, tmp_path):
    (tmp_path / "slurm").mkdir()
    profile = local_profile(tmp_path / "profile", cluster, slurm_partition="no_such_partition")
    result = run(tmp_path / "slurm", "--profile", str(PROFILE), "--workflow-profile", str(profile))
    assert result.returncode not in (0, 124), result.stdout + result.stderr
    assert "invalid partition specified: no_such_partition" in result.stdout + result.stderr
