"""Controls for the evidence run: is a pretrained start that fails to fine-tune the pretraining's doing?

Every fine-tuning of a pretrained method starts from one backbone, its pretraining's, whatever the
fine-tuning seed; a supervised baseline starts from a new random backbone per seed. So a pretrained
method that fails on most seeds may fail because of the weights its pretraining began from, and the
six-epoch schedule, rather than what pretraining did to them. Two controls, on a finished
``results/evidence`` (``make evidence``), with the run's own fine-tuning recipe:

- ``start``: fine-tune from the untrained backbone that every pretraining of the run began from
  (``pretrain.seed``), once per fine-tuning seed, on each given version;
- ``longer``: the given pretrained fine-tunings again with twice the epochs: a run that learns then
  was slow, one that does not was stuck.

Each run's metrics and training log are written to ``docs/evidence/controls/``, and ``summary.md``
there from them.

    .venv/bin/python scripts/evidence_controls.py --versions lq70 --longer lq70/comcl/1 lq70/basic_cl/0
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
import yaml

from comcl.finetune.train import finetune
from comcl.io import write_text
from comcl.pretrain.model import ContrastiveModel

RESULTS = Path("results/evidence")
OUT = Path("docs/evidence/controls")


def _params(config: dict, seed: int, epochs: int | None = None) -> dict:
    params = {key: value for key, value in config["finetune"].items() if key not in ("baselines", "seeds")}
    return {**params, "arch": config["pretrain"]["arch"], "seed": seed, "epochs": epochs or params["epochs"]}


def _start_encoder(config: dict, path: Path) -> Path:
    """The query backbone as :func:`comcl.pretrain.train.pretrain` builds it before its first step."""
    pretrain = config["pretrain"]
    torch.manual_seed(pretrain["seed"])
    model = ContrastiveModel(
        pretrain["arch"], ["L"], pretrain["queue_size"], pretrain["dim"], pretrain["hidden"], pretrain["momentum"]
    )
    torch.save(model.encoder_state_dict(), path)
    return path


def _run(name: str, version: str, encoder: Path, params: dict, work: Path, threads: int) -> dict:
    folder = work / name
    outputs = {
        key: folder / file
        for key, file in (
            ("metrics", "metrics.json"),
            ("predictions", "p.parquet"),
            ("training_log", "log.csv"),
            ("model_file", "model.pt"),
        )
    }
    result = finetune(
        RESULTS / "eyeq" / version / "index.parquet", params, "encoder", encoder, folder / "work", **outputs, threads=threads
    )
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(outputs["metrics"], OUT / f"{name}.json")
    shutil.copy(outputs["training_log"], OUT / f"{name}.csv")
    return result


def _row(name: str, result: dict, epochs: int) -> str:
    kappas = ", ".join(f"{h['val_kappa'] or 0:.2f}" for h in result["history"])
    return f"| {name} | {epochs} | {result['test']['kappa'] or 0:.3f} | {kappas} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="*", default=["lq70"], help="versions fine-tuned from the pretraining's start")
    parser.add_argument(
        "--longer", nargs="*", default=[], help="version/method/seed fine-tunings to repeat with twice the epochs"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config = yaml.safe_load((RESULTS / "config.yaml").read_text())
    lines = [
        "# Controls of the evidence run",
        "",
        "Written by `scripts/evidence_controls.py` from `results/evidence` (its configuration and encoders), with the run's",
        f"fine-tuning recipe. Command: `.venv/bin/python scripts/evidence_controls.py --versions {' '.join(args.versions)} --longer {' '.join(args.longer)}`.",
        "",
        "| run | epochs | test kappa | validation kappa per epoch |",
        "| --- | ---: | ---: | --- |",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        start = _start_encoder(config, work / "start.pt")
        for version in args.versions:
            for seed in config["finetune"]["seeds"]:
                name = f"{version}_start_seed{seed}"
                lines.append(
                    _row(
                        name, _run(name, version, start, _params(config, seed), work, args.threads), config["finetune"]["epochs"]
                    )
                )
        for run in args.longer:
            version, method, seed = run.split("/")
            epochs = 2 * config["finetune"]["epochs"]
            encoder = start if method == "start" else RESULTS / "eyeq" / version / "pretrain" / method / "encoder.pt"
            name = f"{version}_{method}_seed{seed}_{epochs}epochs"
            lines.append(_row(name, _run(name, version, encoder, _params(config, int(seed), epochs), work, args.threads), epochs))
    lines += [
        "",
        f"`start`: the untrained backbone every pretraining of the run began from (pretrain.seed {config['pretrain']['seed']}); "
        + "the other runs start from the named method's encoder.",
    ]
    write_text(OUT / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
