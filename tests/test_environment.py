"""The pins agree everywhere: pyproject.toml, requirements.lock, envs/*.yaml and what is installed."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import yaml

from tests.conftest import REPO

BUILD_ONLY = {"ninja", "setuptools", "wheel"}


def parse_pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def lock() -> dict[str, str]:
    return parse_pins((REPO / "requirements.lock").read_text().splitlines())


def test_direct_dependencies_are_pinned_to_the_locked_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    direct = parse_pins(project["dependencies"] + extras["test"] + extras["lint"])
    locked = lock()
    assert direct.pop("mmcv") == "2.1.0", "mmcv is built by scripts/install.sh, pinned in pyproject only"
    assert "mmcv" not in locked
    assert {name: locked.get(name) for name in direct} == direct


def test_conda_environment_matches_the_lock():
    env = yaml.safe_load((REPO / "envs" / "comcl.yaml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert "python=3.11" in env["dependencies"]
    expected = {name: version for name, version in lock().items() if name not in BUILD_ONLY}
    assert parse_pins(pip_section) == expected


def test_installed_packages_are_the_locked_versions():
    mismatched = {}
    for name, version in lock().items():
        installed = importlib.metadata.version(name)
        if installed.split("+")[0] != version:
            mismatched[name] = (version, installed)
    assert not mismatched, f"installed versions differ from requirements.lock (run scripts/install.sh): {mismatched}"
    assert "opencv-python" not in {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}


def test_the_conda_post_deploy_script_builds_the_pinned_mmcv_with_the_locked_build_tools():
    script = (REPO / "envs" / "comcl.post-deploy.sh").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    mmcv = parse_pins(project["dependencies"])["mmcv"]
    assert f"--no-build-isolation mmcv=={mmcv}" in script
    installed = re.search(r"pip install --no-deps ((?:\S+==\S+ ?)+)\n", script).group(1).split()
    assert parse_pins(installed) == {name: version for name, version in lock().items() if name in BUILD_ONLY}
