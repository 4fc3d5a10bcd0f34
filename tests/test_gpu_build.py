"""How mmcv is built (scripts/mmcv_build.py): CUDA operators where torch sees a GPU and a matching nvcc is there
(or FORCE_CUDA=1), CPU ones otherwise, said before the build; and install.sh and the conda post-deploy script
acting on it. torch, nvcc and pip are fakes: nothing is compiled."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("mmcv_build", REPO / "scripts" / "mmcv_build.py")
mmcv_build = sys.modules["mmcv_build"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
spec.loader.exec_module(mmcv_build)
Machine, BuildError = mmcv_build.Machine, mmcv_build.BuildError
ASK_PIP = mmcv_build._cuda_cache

H200 = ("NVIDIA H200", (9, 0))
A100 = ("NVIDIA A100-SXM4-80GB", (8, 0))
AGAIN = "run the install again"
BUILD_VARIABLES = ("FORCE_CUDA", "CUDA_VISIBLE_DEVICES", "TORCH_CUDA_ARCH_LIST", "CUDA_HOME", "MAX_JOBS", "PIP_CACHE_DIR")
CPUS = len(os.sched_getaffinity(0))  # what nproc says


def machine(**fields) -> Machine:
    """torch 2.9.1 with CUDA 12.8, built up to sm_120, and what ``fields`` change."""
    return Machine(**{"torch_version": "2.9.1+cu128", "torch_cuda": "12.8", "newest_arch": (12, 0), **fields})


@pytest.fixture(autouse=True)
def own_pip_cache(monkeypatch):
    """The CUDA build's pip cache as if pip's were /pip-cache, without asking pip at every decision."""
    monkeypatch.setattr(mmcv_build, "_cuda_cache", lambda found, archs: f"/pip-cache/comcl-mmcv-cuda/{archs}")


def cuda(build) -> bool:
    """Whether the build compiles the CUDA operators: FORCE_CUDA=1 is what makes mmcv's setup do it."""
    return build.env.get("FORCE_CUDA") == "1"


def fake_nvcc(folder: Path, release: str) -> Path:
    """A CUDA "toolkit" at ``folder`` whose bin/nvcc answers --version as NVIDIA's does."""
    nvcc = folder / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(
        "#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
        f"echo 'Cuda compilation tools, release {release}, V{release}.93'\necho 'Build cuda_{release}.r{release}/compiler.0_0'\n"
    )
    nvcc.chmod(0o755)
    return folder


# The decision table.


def test_a_gpu_and_a_matching_nvcc_give_the_cuda_operators_for_that_gpu():
    build = mmcv_build.decide(machine(gpus=(H200,), cuda_home="/usr/local/cuda-12.8", nvcc_release="12.8"), {}, AGAIN)
    assert cuda(build)
    assert build.env["FORCE_CUDA"] == "1"  # setup.py's switch, whatever torch sees during the build
    assert build.env["TORCH_CUDA_ARCH_LIST"] == "9.0+PTX"
    assert build.env["CUDA_HOME"] == "/usr/local/cuda-12.8"
    assert int(build.env["MAX_JOBS"]) >= 1
    assert build.env["PIP_CACHE_DIR"] == "/pip-cache/comcl-mmcv-cuda/9.0+PTX"
    assert "1 x NVIDIA H200 (compute capability 9.0)" in build.message and "nvcc 12.8" in build.message


def test_another_minor_release_of_the_cuda_major_version_is_enough():
    build = mmcv_build.decide(machine(gpus=(A100,), cuda_home="/opt/cuda", nvcc_release="12.4"), {}, AGAIN)
    assert cuda(build) and build.env["TORCH_CUDA_ARCH_LIST"] == "8.0+PTX"


def test_every_kind_of_gpu_gets_its_architecture_at_most_the_newest_torch_was_built_for():
    future = ("a GPU newer than torch", (13, 0))
    build = mmcv_build.decide(machine(gpus=(H200, A100, H200, future), cuda_home="/c", nvcc_release="12.8"), {}, AGAIN)
    assert build.env["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0;12.0+PTX"
    assert "2 x NVIDIA H200" in build.message and "1 x NVIDIA A100" in build.message


def test_the_users_architectures_and_jobs_are_kept():
    found = machine(gpus=(H200,), cuda_home="/c", nvcc_release="12.8")
    build = mmcv_build.decide(found, {"TORCH_CUDA_ARCH_LIST": "8.0;9.0", "MAX_JOBS": "3"}, AGAIN)
    assert build.env["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0" and build.env["MAX_JOBS"] == "3"


@pytest.mark.parametrize(
    "home, release, problem",
    [
        (None, None, "there is no CUDA compiler (no CUDA_HOME, no nvcc on PATH, no /usr/local/cuda)"),
        ("/opt/cuda", None, "there is no working CUDA compiler at /opt/cuda/bin/nvcc"),
        ("/opt/cuda-13", "13.0", "the CUDA compiler /opt/cuda-13/bin/nvcc is CUDA 13.0, and torch 2.9.1+cu128 needs CUDA 12.x"),
    ],
)
def test_a_gpu_without_a_matching_nvcc_gives_the_cpu_operators_the_gpu_hidden_and_says_how_to_get_cuda(home, release, problem):
    build = mmcv_build.decide(machine(gpus=(H200,), cuda_home=home, nvcc_release=release), {}, AGAIN)
    assert not cuda(build)
    assert build.env == {"CUDA_VISIBLE_DEVICES": ""}  # else setup.py, asking torch, takes the CUDA path and stops
    assert build.message.startswith(f"WARNING: torch sees 1 x NVIDIA H200 (compute capability 9.0), but {problem}.")
    assert "install the CUDA 12.8 toolkit" in build.message and "CUDA_HOME=/usr/local/cuda-12.8" in build.message
    assert f"then {AGAIN}." in build.message
    assert "hide the GPU: CUDA_VISIBLE_DEVICES= for the install" in build.message
    assert "the detector stages (train_detector, detect) run on the CPU" in build.message


def test_no_gpu_gives_the_cpu_operators_and_says_how_gpu_machines_get_cuda():
    build = mmcv_build.decide(machine(), {}, AGAIN)
    assert not cuda(build) and build.env == {"CUDA_VISIBLE_DEVICES": ""}
    assert build.message.startswith("Building mmcv's CPU operators: torch sees no GPU here.")
    assert "FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=" in build.message and "a CUDA 12.8 nvcc" in build.message


def test_a_cpu_build_changes_no_pip_setting_so_pips_cache_keeps_serving_its_wheel():
    for found in (machine(), machine(gpus=(H200,)), machine(torch_cuda=None)):
        assert mmcv_build.decide(found, {}, AGAIN).env == {"CUDA_VISIBLE_DEVICES": ""}


def test_a_cpu_only_torch_gives_the_cpu_operators_and_refuses_force_cuda():
    assert not cuda(mmcv_build.decide(machine(torch_cuda=None), {}, AGAIN))
    with pytest.raises(BuildError, match=r"FORCE_CUDA=1, but torch 2.9.1\+cu128 is a CPU-only build"):
        mmcv_build.decide(machine(torch_cuda=None), {"FORCE_CUDA": "1"}, AGAIN)


def test_force_cuda_without_a_gpu_builds_for_the_given_architectures():
    # The cluster case: a login node with nvcc builds for the GPU nodes.
    asked = {"FORCE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "8.0;9.0"}
    build = mmcv_build.decide(machine(cuda_home="/c", nvcc_release="12.8"), asked, AGAIN)
    assert cuda(build) and build.env["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0"
    assert "the GPUs of TORCH_CUDA_ARCH_LIST" in build.message


def test_force_cuda_stops_before_building_when_it_cannot_work():
    with pytest.raises(BuildError, match=r"needs TORCH_CUDA_ARCH_LIST.*compute_cap"):
        mmcv_build.decide(machine(cuda_home="/c", nvcc_release="12.8"), {"FORCE_CUDA": "1"}, AGAIN)
    with pytest.raises(BuildError, match=r"CUDA 13.0, and torch .* needs CUDA 12.x\. For them, install the CUDA 12.8 toolkit"):
        mmcv_build.decide(machine(gpus=(H200,), cuda_home="/c", nvcc_release="13.0"), {"FORCE_CUDA": "1"}, AGAIN)


def test_force_cuda_0_does_not_stop_a_cuda_build_as_it_does_not_in_mmcvs_setup():
    build = mmcv_build.decide(machine(gpus=(H200,), cuda_home="/c", nvcc_release="12.8"), {"FORCE_CUDA": "0"}, AGAIN)
    assert cuda(build)


# What the decision is made from.


def test_the_cuda_toolkit_is_found_as_torchs_cpp_extension_finds_it(tmp_path):
    on_path = fake_nvcc(tmp_path / "cuda-12.6", "12.6")
    assert mmcv_build.cuda_home({"CUDA_HOME": "/a", "CUDA_PATH": "/b", "PATH": str(on_path / "bin")}) == "/a"
    assert mmcv_build.cuda_home({"CUDA_PATH": "/b", "PATH": str(on_path / "bin")}) == "/b"
    assert mmcv_build.cuda_home({"PATH": f"{tmp_path / 'empty'}:{on_path / 'bin'}"}) == str(on_path)


def test_nvccs_release_is_read_from_its_version(tmp_path):
    assert mmcv_build.nvcc_release(str(fake_nvcc(tmp_path / "cuda", "12.8"))) == "12.8"
    assert mmcv_build.nvcc_release(str(tmp_path / "none")) is None
    broken = fake_nvcc(tmp_path / "broken", "12.8")
    (broken / "bin" / "nvcc").write_text("#!/bin/sh\nexit 3\n")
    assert mmcv_build.nvcc_release(str(broken)) is None


def test_torchs_versions_are_read_without_importing_it():
    import torch

    assert mmcv_build.torch_versions() == (torch.__version__, torch.version.cuda)


def test_a_loaded_driver_shows_as_gpu_entries_or_wsls_device(tmp_path):
    gpus, dxg = tmp_path / "gpus", tmp_path / "dxg"
    gpus.mkdir()
    assert not mmcv_build.driver_loaded((gpus, dxg))  # the folder of a driver that found no GPU
    (gpus / "0000:17:00.0").mkdir()
    assert mmcv_build.driver_loaded((gpus, dxg))
    gpus.joinpath("0000:17:00.0").rmdir()
    dxg.touch()
    assert mmcv_build.driver_loaded((gpus, dxg))


def test_without_a_driver_torch_is_not_imported():
    code = (
        "import sys; sys.path.insert(0, 'scripts'); import mmcv_build; mmcv_build.driver_loaded = lambda: False; "
        "found = mmcv_build.probe({}); print(found.gpus, found.cuda_home, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ["()", "None", "False"]


def test_where_a_driver_is_loaded_torch_and_nvcc_are_asked(tmp_path, monkeypatch):
    def capability(index):
        return [(9, 0), (8, 0)][index]

    cuda = types.SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 2,
        get_device_name=lambda index: ["NVIDIA H200", "NVIDIA A100"][index],
        get_device_capability=capability,
        get_arch_list=lambda: ["sm_80", "sm_90", "sm_100", "sm_120"],
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    monkeypatch.setattr(mmcv_build, "torch_versions", lambda: ("2.9.1+cu128", "12.8"))
    monkeypatch.setattr(mmcv_build, "driver_loaded", lambda: True)
    home = fake_nvcc(tmp_path / "cuda", "12.8")
    found = mmcv_build.probe({"PATH": str(home / "bin")})
    assert found == machine(gpus=(("NVIDIA H200", (9, 0)), ("NVIDIA A100", (8, 0))), cuda_home=str(home), nvcc_release="12.8")
    assert mmcv_build.decide(found, {}, AGAIN).env["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0+PTX"


def test_a_cuda_build_caches_in_a_folder_of_its_own_inside_pips_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path))
    found = machine(nvcc_release="12.8")
    assert ASK_PIP(found, "8.0;9.0+PTX") == str(tmp_path / "comcl-mmcv-cuda" / "torch2.9.1_cu128-nvcc12.8-sm8.0_9.0_PTX")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    assert ASK_PIP(found, "9.0") is None


# install.sh and the post-deploy script, with fake pip, torch and nvcc.


def fake_environment(tmp_path: Path, *, mmcv_installed: bool = False) -> tuple[Path, dict[str, str]]:
    """A fake virtual environment whose python records each `pip install` with the build variables and runs
    everything else (the decision) with the real interpreter and a fake torch: CUDA 12.8, no GPU."""
    record = tmp_path / "pip.log"
    fake_torch = tmp_path / "site" / "torch"
    fake_torch.mkdir(parents=True)
    (fake_torch / "__init__.py").write_text(
        "from types import SimpleNamespace\ncuda = SimpleNamespace(is_available=lambda: False, get_arch_list=lambda: [])\n"
    )
    (fake_torch / "version.py").write_text("__version__ = '2.9.1+cu128'\ncuda = '12.8'\n")
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    variables = " ".join(f"{name}=${{{name}-unset}}" for name in BUILD_VARIABLES)
    decide = f'PYTHONPATH={tmp_path / "site"} exec {sys.executable} "$@"'
    python.write_text(
        "#!/usr/bin/env bash\n"
        'case "$1 $#" in\n'
        f'    "-m "*) echo "$* | {variables}" >> {record} ;;  # pip\n'
        f'    "-c 2") exit {0 if mmcv_installed else 1} ;;  # is mmcv installed?\n'
        '    "- 1") cat > /dev/null ;;  # the checks of install.sh\n'
        f'    "scripts/mmcv_build.py "* | "- "*) {decide} ;;\n'
        '    *) echo "unexpected python $*" >&2; exit 99 ;;\n'
        "esac\n"
    )
    python.chmod(0o755)
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "PIP_CACHE_DIR": str(tmp_path / "pip-cache")}
    return record, env


def mmcv_install(record: Path) -> str:
    return next(line for line in record.read_text().splitlines() if "mmcv==2.1.0" in line)


def run_install(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = ["bash", str(REPO / "scripts" / "install.sh"), str(tmp_path / "venv")]
    env = {**env, "PYTHON": str(tmp_path / "venv" / "bin" / "python")}  # the Python check too
    return subprocess.run(command, capture_output=True, text=True, env=env)


def test_install_builds_the_cpu_operators_without_a_gpu_as_before(tmp_path):
    record, env = fake_environment(tmp_path)
    result = run_install(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "Building mmcv's CPU operators: torch sees no GPU here." in result.stderr
    line = mmcv_install(record)
    assert line.startswith("-m pip --disable-pip-version-check install --no-deps --no-build-isolation mmcv==2.1.0 |")
    assert f"FORCE_CUDA=unset CUDA_VISIBLE_DEVICES= TORCH_CUDA_ARCH_LIST=unset CUDA_HOME=unset MAX_JOBS={CPUS} " in line
    assert line.endswith(f"PIP_CACHE_DIR={tmp_path / 'pip-cache'}")  # pip's own cache, as before
    assert "CUDA_VISIBLE_DEVICES=unset" in record.read_text().splitlines()[-1]  # comcl itself, after: the GPU not hidden


def test_install_builds_cuda_operators_with_force_cuda_and_a_matching_nvcc(tmp_path):
    record, env = fake_environment(tmp_path)
    home = fake_nvcc(tmp_path / "cuda-12.8", "12.8")
    env.update(PATH=f"{home / 'bin'}:{env['PATH']}", FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST="8.0;9.0", MAX_JOBS="5")
    result = run_install(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "CUDA operators for the GPUs of TORCH_CUDA_ARCH_LIST: TORCH_CUDA_ARCH_LIST=8.0;9.0, nvcc 12.8" in result.stderr
    cache = tmp_path / "pip-cache" / "comcl-mmcv-cuda" / "torch2.9.1_cu128-nvcc12.8-sm8.0_9.0"
    assert mmcv_install(record).endswith(
        f"FORCE_CUDA=1 CUDA_VISIBLE_DEVICES=unset TORCH_CUDA_ARCH_LIST=8.0;9.0 CUDA_HOME={home} MAX_JOBS=5 PIP_CACHE_DIR={cache}"
    )


def test_install_stops_before_building_when_force_cuda_finds_another_cuda(tmp_path):
    record, env = fake_environment(tmp_path)
    home = fake_nvcc(tmp_path / "cuda-13.0", "13.0")
    env.update(FORCE_CUDA="1", CUDA_HOME=str(home))
    result = run_install(tmp_path, env)
    assert result.returncode == 1
    assert "mmcv cannot be built as asked: FORCE_CUDA=1 asks for mmcv's CUDA operators, but the CUDA compiler" in result.stderr
    assert "INSTALL FAILED: mmcv cannot be built as asked (see above)" in result.stderr
    assert "mmcv==2.1.0" not in record.read_text()


def test_install_leaves_an_installed_mmcv_alone_without_asking(tmp_path):
    record, env = fake_environment(tmp_path, mmcv_installed=True)
    result = run_install(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "mmcv 2.1.0: installed" in result.stdout and "mmcv==2.1.0" not in record.read_text()


def run_post_deploy(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # As Snakemake runs it: a copy, away from the repository, with the environment's python first on PATH.
    copy = tmp_path / "env.post-deploy.sh"
    copy.write_text((REPO / "envs" / "comcl.post-deploy.sh").read_text())
    return subprocess.run(["bash", str(copy)], capture_output=True, text=True, env=env, cwd=tmp_path)


def test_the_post_deploy_script_builds_as_install_does(tmp_path):
    record, env = fake_environment(tmp_path)
    result = run_post_deploy(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "Building mmcv's CPU operators: torch sees no GPU here." in result.stderr
    line = mmcv_install(record)
    assert line.startswith("-m pip install --no-deps --no-build-isolation mmcv==2.1.0 |")
    assert f"FORCE_CUDA=unset CUDA_VISIBLE_DEVICES= TORCH_CUDA_ARCH_LIST=unset CUDA_HOME=unset MAX_JOBS={CPUS} " in line

    home = fake_nvcc(tmp_path / "cuda-13.0", "13.0")
    result = run_post_deploy(tmp_path, {**env, "FORCE_CUDA": "1", "CUDA_HOME": str(home)})
    assert result.returncode == 1 and "mmcv cannot be built as asked" in result.stderr


def test_the_post_deploy_script_carries_the_decision_of_scripts_verbatim():
    script = (REPO / "envs" / "comcl.post-deploy.sh").read_text()
    inlined = script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0] + "\n"
    assert inlined == (REPO / "scripts" / "mmcv_build.py").read_text(), "regenerate it: .venv/bin/python scripts/lock.py"
