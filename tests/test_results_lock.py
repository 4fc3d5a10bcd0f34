"""One workflow at a time writes a results folder: the lock in the folder, taken over when stale, and the workflow's use of it."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import yaml

from comcl.results_lock import LOCK_FILE, ResultsLocked, acquire, release
from tests.conftest import REPO
from tests.tiny_workflow import SNAKEMAKE, over_the_demo


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_second_workflow_is_refused_while_the_first_holds_the_lock_and_the_holder_releases_it(tmp_path):
    acquire(tmp_path / "results", tmp_path)
    lock = tmp_path / "results" / LOCK_FILE
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    held = {"pid": os.getppid(), "host": socket.gethostname(), "checkout": "/elsewhere"}
    lock.write_text(json.dumps(held))
    with pytest.raises(ResultsLocked, match=rf"process {os.getppid()} on .* \(checkout /elsewhere\).*delete .*{LOCK_FILE}"):
        acquire(tmp_path / "results", tmp_path)
    release(tmp_path / "results")  # not ours: left alone
    assert json.loads(lock.read_text()) == held
    lock.write_text(json.dumps({**held, "pid": os.getpid()}))
    release(tmp_path / "results")
    assert not lock.exists()


def test_a_lock_left_by_a_killed_workflow_is_taken_over_one_of_another_machine_is_not(tmp_path):
    lock = tmp_path / LOCK_FILE
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "checkout": "/old"}))
    acquire(tmp_path, tmp_path)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": "another-node", "checkout": "/old"}))
    with pytest.raises(ResultsLocked, match="another-node"):
        acquire(tmp_path, tmp_path)


def test_the_workflow_stops_on_a_results_folder_another_workflow_writes(tmp_path):
    results = tmp_path / "shared_results"
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump({"results": str(results)}))
    target = str(results / "config.yaml")  # before --configfile, which would read it as one more configuration file
    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--cores",
        "1",
        target,
        *over_the_demo(tmp_path / "overlay.yaml"),
    ]
    results.mkdir()
    (results / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "checkout": "/other"}))
    refused = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode != 0 and "is being written by another workflow" in refused.stdout + refused.stderr
    assert not (results / "config.yaml").exists()
    (results / LOCK_FILE).unlink()
    ran = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (results / "config.yaml").exists() and not (results / LOCK_FILE).exists()
