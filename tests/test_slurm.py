"""profiles/slurm on a real SLURM cluster: one node on this machine (scripts/slurm/start.sh), jobs through sbatch."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from comcl.download import sha256sum
from tests.conftest import REPO
from tests.tiny_workflow import SNAKEMAKE, TINY, over_the_demo

PROFILE = REPO / "profiles" / "slurm"
LOCAL_RULES = set(
    re.search(r"^localrules:\s+([\w,\s]+?)\n\n", (REPO / "Snakefile").read_text(), flags=re.MULTILINE)[1]
    .replace(",", " ")
    .split()
)
# What holds wall-clock times (logs, benchmarks, the detector's per-iteration log) or names of its own (MMEngine's work folder).
TIMED = re.compile(r"/(logs|benchmarks|work)/|detector/training_log\.csv$|figures/benchmarks\.png$")
# sbatch's allocation and status checks add to every one of the tiny run's 55 jobs: 900 s did not cover them on 2 cores.
LIMIT_S = 1500


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
        "cores": 2,  # the threads of the local run: equal outputs need equal threads
        "default-resources": {
            **profile["default-resources"],
            "mem_mb": 1000,
            "slurm_partition": cluster["partition"],
            "slurm_account": cluster["account"],
            **defaults,
        },
        "set-resources": {rule: {**resources, **small} for rule, resources in profile["set-resources"].items()},
        "slurm-init-seconds-before-status-checks": 1,
        "slurm-keep-successful-logs": True,
    }
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(overrides))
    return folder


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """The tiny workflow, stopped by SIGINT at the limit: SIGINT, unlike SIGTERM, makes it cancel its SLURM jobs."""
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    command = [
        "timeout",
        "-s",
        "INT",
        "-k",
        "60",
        str(LIMIT_S),
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *over_the_demo(workdir / "tiny.yaml"),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir)


def test_the_profile_sizes_only_rules_that_exist_and_gives_the_training_rules_a_gpu():
    rules = subprocess.run([*SNAKEMAKE, "--list-rules"], capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    sized = yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"]
    assert set(sized) <= set(rules)
    assert all(sized[rule]["gpu"] >= 1 for rule in ("train_detector", "pretrain", "finetune"))


@pytest.mark.slurm
def test_the_tiny_workflow_goes_through_sbatch_and_gives_what_a_local_run_gives(cluster, tiny_run, tmp_path):
    profile = local_profile(tmp_path / "profile", cluster)
    (tmp_path / "slurm").mkdir()
    result = run(tmp_path / "slurm", "--profile", str(PROFILE), "--workflow-profile", str(profile))
    assert result.returncode == 0, f"exit {result.returncode} (124: over {LIMIT_S} s)\n{result.stdout}\n{result.stderr}"

    folder = tmp_path / "slurm/.snakemake/slurm_logs"  # rule_<rule>/<wildcards>/<SLURM job id>.log
    logs = list(folder.glob("rule_*/**/*.log"))
    # The rules of the local run, from their logs: out/logs/<rule>/<wildcards>.log or out/logs/<rule>.log.
    ran = {Path(path).parts[2].removesuffix(".log") for path in tiny_run.digests if Path(path).parts[1] == "logs"}
    assert {log.relative_to(folder).parts[0].removeprefix("rule_") for log in logs} == ran - LOCAL_RULES
    job_ids = [log.stem for log in logs]
    assert all(re.fullmatch(r"\d+", job_id) for job_id in job_ids), job_ids
    states = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", ",".join(job_ids)], capture_output=True, text=True, check=True
    )
    assert states.stdout.split() == ["COMPLETED"] * len(job_ids)
    written = {
        str(path.relative_to(tmp_path / "slurm")) for path in (tmp_path / "slurm" / TINY["results"]).rglob("*") if path.is_file()
    }
    compared = sorted(path for path in written if not TIMED.search(path))
    assert compared == sorted(path for path in tiny_run.digests if not TIMED.search(path))
    trained = {
        "out/eyeq/detector/model.pth",
        "out/eyeq/original/pretrain/comcl/encoder.pt",
        "out/eyeq/original/finetune/comcl/seed0/model.pt",
    }
    assert trained | {"out/tables/table1.csv", "out/chestxray14/lq70/patches.parquet"} <= set(compared)
    assert [path for path in compared if sha256sum(tmp_path / "slurm" / path) != tiny_run.digests[path]] == []


@pytest.mark.slurm
def test_a_partition_that_does_not_exist_stops_the_run_with_sbatchs_message(cluster, tmp_path):
    (tmp_path / "slurm").mkdir()
    profile = local_profile(tmp_path / "profile", cluster, slurm_partition="no_such_partition")
    result = run(tmp_path / "slurm", "--profile", str(PROFILE), "--workflow-profile", str(profile))
    assert result.returncode not in (0, 124), result.stdout + result.stderr
    assert "invalid partition specified: no_such_partition" in result.stdout + result.stderr
