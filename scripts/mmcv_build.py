"""How mmcv is built on this machine: with its CUDA operators or with its CPU ones, and what that means.

scripts/install.sh runs this file, and envs/comcl.post-deploy.sh a copy of it (Snakemake runs that script
from .snakemake/conda/, away from the repository), after torch is installed and before pip builds mmcv.
It writes the build's environment as shell `export` lines on stdout, for `eval`, and says on stderr what
the build will be; it exits with 1, the reason on stderr, when FORCE_CUDA=1 asks for a build that cannot work.

mmcv's setup.py compiles the CUDA operators whenever torch sees a GPU or FORCE_CUDA=1 (FORCE_CUDA=0 does
not stop it), and torch's cpp_extension then needs the nvcc of CUDA_HOME (else the one on PATH, else
/usr/local/cuda's) with torch's CUDA major version. A CPU build, in turn, has operators that fail on the
first CUDA tensor. So:

  FORCE_CUDA=1                        CUDA operators for TORCH_CUDA_ARCH_LIST, else the GPUs seen;
                                      stop now without a matching nvcc, or without both
  a GPU seen, a matching nvcc         CUDA operators for the GPUs seen
  a GPU seen, no matching nvcc        CPU operators, the GPU hidden from setup.py (CUDA_VISIBLE_DEVICES=,
                                      the only switch it heeds), a warning and how to get the CUDA ones
  no GPU seen                         CPU operators

A CUDA build keeps its wheel in a pip cache of its own, named by torch, nvcc and the architectures:
pip's wheel cache knows the sdist alone, so it would serve a CPU wheel to a CUDA build (or one built for
other GPUs). A CPU build keeps pip's default cache and so its cached wheel. Without an NVIDIA driver
(the CPU-only machine) torch is not imported at all: that would cost seconds, and it would see no GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Where a loaded NVIDIA driver shows, on Linux (one entry per GPU) and under WSL.
DRIVER_SIGNS = (Path("/proc/driver/nvidia/gpus"), Path("/dev/dxg"))
# A rough allowance per nvcc process: MAX_JOBS of them must not exhaust the memory of a CUDA build.
NVCC_JOB_BYTES = 2 * 1024**3


class BuildError(Exception):
    """A build that FORCE_CUDA=1 asks for and that cannot work here: better said now than after the compilation."""


@dataclass(frozen=True)
class Machine:
    """What the build depends on: torch (its CUDA version is None for a CPU-only torch), the GPUs it sees
    (name, compute capability), the newest architecture it was built for, and the CUDA toolkit it would use."""

    torch_version: str
    torch_cuda: str | None
    gpus: tuple[tuple[str, tuple[int, int]], ...] = ()
    newest_arch: tuple[int, int] | None = None
    cuda_home: str | None = None
    nvcc_release: str | None = None  # "12.8"; None when cuda_home has no nvcc that says its version


@dataclass(frozen=True)
class Build:
    """The environment for pip, and what to tell the user before the build."""

    env: dict[str, str]
    message: str


def driver_loaded(signs: tuple[Path, ...] = DRIVER_SIGNS) -> bool:
    """Whether an NVIDIA driver is loaded: without one torch sees no GPU, so it need not be asked."""
    return any(sign.exists() and (not sign.is_dir() or any(sign.iterdir())) for sign in signs)


def torch_versions() -> tuple[str, str | None]:
    """torch's version and CUDA version, read from torch/version.py without importing torch (seconds)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise BuildError("torch is not installed in this environment: install it before mmcv")
    version = runpy.run_path(str(Path(spec.origin).with_name("version.py")))
    return version["__version__"], version["cuda"]


def cuda_home(env: Mapping[str, str]) -> str | None:
    """The CUDA toolkit that torch's cpp_extension will build with, found as its _find_cuda_home does."""
    home = env.get("CUDA_HOME") or env.get("CUDA_PATH")
    if home is None:
        nvcc = shutil.which("nvcc", path=env.get("PATH"))
        if nvcc is not None:
            home = os.path.dirname(os.path.dirname(nvcc))
        elif os.path.exists("/usr/local/cuda"):
            home = "/usr/local/cuda"
    return home


def nvcc_release(home: str) -> str | None:
    """The CUDA release ("12.8") of ``home``'s nvcc, as torch reads it from ``nvcc --version``."""
    try:
        answer = subprocess.run([os.path.join(home, "bin", "nvcc"), "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    found = re.search(r"release (\d+\.\d+)", answer.stdout)
    return found.group(1) if found else None


def probe(env: Mapping[str, str]) -> Machine:
    """This machine as the build will find it. torch is imported only where an NVIDIA driver is loaded, and
    nvcc asked only where a CUDA build is possible."""
    version, cuda = torch_versions()
    forced = env.get("FORCE_CUDA") == "1"
    if cuda is None or not (forced or driver_loaded()):
        return Machine(version, cuda)
    import torch

    seen = range(torch.cuda.device_count()) if torch.cuda.is_available() else ()
    gpus = tuple((torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i)) for i in seen)
    built = [(int(sm[:-1]), int(sm[-1])) for sm in re.findall(r"sm_(\d+)", " ".join(torch.cuda.get_arch_list()))]
    home = cuda_home(env) if forced or gpus else None
    return Machine(version, cuda, gpus, max(built, default=None), home, nvcc_release(home) if home else None)


def arch_list(machine: Machine) -> str:
    """TORCH_CUDA_ARCH_LIST for the GPUs seen, as torch's own default would choose it: each capability
    (at most the newest torch was built for, which torch's nvcc can compile), PTX for the newest."""
    capabilities = sorted({min(capability, machine.newest_arch or capability) for _, capability in machine.gpus})
    return (";".join(f"{major}.{minor}" for major, minor in capabilities) + "+PTX") if capabilities else ""


def nvcc_problem(machine: Machine) -> str | None:
    """Why torch's cpp_extension would refuse to compile the CUDA operators here, or None."""
    wanted = machine.torch_cuda.split(".")[0]
    if machine.cuda_home is None:
        return "there is no CUDA compiler (no CUDA_HOME, no nvcc on PATH, no /usr/local/cuda)"
    nvcc = os.path.join(machine.cuda_home, "bin", "nvcc")
    if machine.nvcc_release is None:
        return f"there is no working CUDA compiler at {nvcc}"
    if machine.nvcc_release.split(".")[0] != wanted:
        return f"the CUDA compiler {nvcc} is CUDA {machine.nvcc_release}, and torch {machine.torch_version} needs CUDA {wanted}.x"
    return None


def toolkit_advice(machine: Machine) -> str:
    cuda = machine.torch_cuda
    return (
        f"install the CUDA {cuda} toolkit (torch was built with {cuda}; the nvcc of another {cuda.split('.')[0]}.x also works) "
        f"and put its nvcc on PATH or set CUDA_HOME (e.g. CUDA_HOME=/usr/local/cuda-{cuda})"
    )


def describe_gpus(machine: Machine) -> str:
    """The GPUs as a list such as "2 x NVIDIA H200 (compute capability 9.0)", one entry per kind of GPU."""
    kinds = Counter(machine.gpus)
    return ", ".join(f"{count} x {name} (compute capability {major}.{minor})" for (name, (major, minor)), count in kinds.items())


def build_jobs(env: Mapping[str, str]) -> str:
    """MAX_JOBS of a CUDA build, unless given: one per CPU, as many as the memory holds nvcc processes."""
    cpus = len(os.sched_getaffinity(0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return env.get("MAX_JOBS") or str(max(1, min(cpus, memory // NVCC_JOB_BYTES)))


def decide(machine: Machine, env: Mapping[str, str], again: str) -> Build:
    """The build for ``machine`` (see the module docstring); ``again`` says how to build mmcv anew here."""
    forced = env.get("FORCE_CUDA") == "1"
    if machine.torch_cuda is None:
        if forced:
            raise BuildError(f"FORCE_CUDA=1, but torch {machine.torch_version} is a CPU-only build: it runs no CUDA operators")
        return _cpu(f"Building mmcv's CPU operators: torch {machine.torch_version} is a CPU-only build.")
    if not (forced or machine.gpus):
        return _cpu(
            "Building mmcv's CPU operators: torch sees no GPU here. Used on a GPU machine, this environment runs the "
            "detector stages on its CPU. For GPU machines, build on one of them, or here with FORCE_CUDA=1, "
            f"TORCH_CUDA_ARCH_LIST='8.0;9.0' (their compute capabilities) and a CUDA {machine.torch_cuda} nvcc "
            "(README: GPU machines)."
        )
    problem = nvcc_problem(machine)
    if problem is not None:
        if forced:
            raise BuildError(f"FORCE_CUDA=1 asks for mmcv's CUDA operators, but {problem}. For them, {toolkit_advice(machine)}.")
        return _cpu(
            f"WARNING: torch sees {describe_gpus(machine)}, but {problem}. Building mmcv's CPU operators only, the GPU hidden "
            "from its setup (CUDA_VISIBLE_DEVICES=), which would otherwise try the CUDA ones and stop. With them the "
            "detector stages (train_detector, detect) run on the CPU, far slower: detector.device and detect.device "
            "auto fall back to it with a warning, cuda stops.\n"
            f"For the CUDA operators, {toolkit_advice(machine)}, then {again}.\n"
            "To build the CPU operators on purpose, without this warning, hide the GPU: CUDA_VISIBLE_DEVICES= for the install."
        )
    archs = env.get("TORCH_CUDA_ARCH_LIST") or arch_list(machine)
    if not archs:
        raise BuildError(
            "FORCE_CUDA=1 where torch sees no GPU needs TORCH_CUDA_ARCH_LIST: the compute capabilities of the GPUs that will "
            "run the detector (e.g. '8.0;9.0' for A100 and H100; on a GPU node, "
            "`nvidia-smi --query-gpu=name,compute_cap --format=csv` says them)"
        )
    jobs = build_jobs(env)
    build = {"FORCE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": archs, "CUDA_HOME": machine.cuda_home, "MAX_JOBS": jobs}
    cache = _cuda_cache(machine, archs)
    if cache is not None:
        build["PIP_CACHE_DIR"] = cache
    target = describe_gpus(machine) or "the GPUs of TORCH_CUDA_ARCH_LIST"
    return Build(
        env=build,
        message=(
            f"Building mmcv's CUDA operators for {target}: TORCH_CUDA_ARCH_LIST={archs}, nvcc {machine.nvcc_release} "
            f"of {machine.cuda_home}, {jobs} jobs. The first time this takes long (an estimate: 10-30 min on 8-16 cores, "
            "an hour or more on 2, more with each architecture); then pip's cache makes it fast"
            + (f" ({cache})." if cache else ".")
        ),
    )


def _cpu(message: str) -> Build:
    # Binding even if torch would see a GPU that the driver check missed: setup.py then takes the CPU path too.
    return Build(env={"CUDA_VISIBLE_DEVICES": ""}, message=message)


def _cuda_cache(machine: Machine, archs: str) -> str | None:
    """The pip cache of this CUDA build: a folder in pip's own cache, or None where pip's cache is disabled."""
    answer = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        return None
    variant = re.sub(r"[^A-Za-z0-9.-]+", "_", f"torch{machine.torch_version}-nvcc{machine.nvcc_release}-sm{archs}")
    return os.path.join(answer.stdout.strip(), "comcl-mmcv-cuda", variant)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--again", required=True, help="how to build mmcv anew in this environment, for the advice")
    args = parser.parse_args(argv)
    try:
        build = decide(probe(os.environ), os.environ, args.again)
    except BuildError as error:
        print(f"mmcv cannot be built as asked: {error}", file=sys.stderr)
        return 1
    print(build.message, file=sys.stderr)
    print("".join(f"export {name}={shlex.quote(value)}\n" for name, value in build.env.items()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
