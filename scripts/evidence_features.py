"""How many directions the evidence run's encoders use on whole images: the participation ratio of their features.

For every encoder of a finished ``results/evidence`` and for the untrained backbone the pretrainings began from,
the backbone's pooled features of the first 96 training images of each version at the fine-tuning input size,
batch norm in training mode as fine-tuning starts it. The participation ratio (sum of the covariance's
eigenvalues squared over the sum of their squares) counts the directions that carry the images' variance: a
collapsed encoder has about one. Written to ``docs/evidence/controls/features.md``.

    .venv/bin/python scripts/evidence_features.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from comcl.finetune.data import ImageDataset
from comcl.io import read_table, write_text
from comcl.pretrain.model import ContrastiveModel, backbone

RESULTS = Path("results/evidence")
OUT = Path("docs/evidence/controls/features.md")
IMAGES = 96
MOVED = ("conv1.weight", "layer2.0.conv1.weight", "layer4.1.conv2.weight")


def cosine(first: torch.Tensor, second: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(first.flatten().float(), second.flatten().float(), dim=0))


def participation_ratio(features: np.ndarray) -> float:
    eigenvalues = np.clip(np.linalg.eigvalsh(np.cov(features.T)), 0, None)
    return float(eigenvalues.sum() ** 2 / (eigenvalues**2).sum())


def main() -> None:
    torch.set_num_threads(2)
    config = yaml.safe_load((RESULTS / "config.yaml").read_text())
    pretrain, size = config["pretrain"], config["finetune"]["input_size"]
    torch.manual_seed(pretrain["seed"])
    start = ContrastiveModel(
        pretrain["arch"], ["L"], pretrain["queue_size"], pretrain["dim"], pretrain["hidden"], pretrain["momentum"]
    )
    lines = [
        "# Feature directions of the evidence run's encoders",
        "",
        f"Written by `scripts/evidence_features.py`: pooled features of the first {IMAGES} training images at {size} px,",
        "batch norm in training mode; the participation ratio counts the directions that carry their variance.",
        "",
        "Beside it, how far pretraining moved each encoder from that start: the cosine similarity of the weights of",
        f"{', '.join(MOVED)} with the start's, and the rms of the last one's off-centre 3x3 taps (the weights",
        "that got no gradient at 1x1 maps).",
        "",
        "| version | encoder | participation ratio | std across images / mean abs | cosine with the start | off-centre rms |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    for version in sorted({path.parents[2].name for path in RESULTS.glob("eyeq/*/pretrain/*/encoder.pt")}):
        frame, meta = read_table(RESULTS / "eyeq" / version / "index.parquet")
        data = ImageDataset(frame[frame["split"] == "train"].head(IMAGES), meta, size, None, 0)
        images = torch.stack([data[i][0] for i in range(len(data))])
        encoders = {"start (untrained)": start.encoder_state_dict()}
        for path in sorted((RESULTS / "eyeq" / version / "pretrain").glob("*/encoder.pt")):
            encoders[path.parent.name] = torch.load(path, weights_only=True)
        for name, state in encoders.items():
            network, _ = backbone(pretrain["arch"])
            network.load_state_dict(state)
            network.train()
            with torch.no_grad():
                features = network(images).numpy()
            spread = features.std(axis=0).mean() / np.abs(features).mean()
            cosines = ", ".join(f"{cosine(state[key], encoders['start (untrained)'][key]):.3f}" for key in MOVED)
            taps = state[MOVED[-1]].clone()
            taps[:, :, 1, 1] = 0  # the centre tap out; eight of nine remain
            off_centre = float(taps.square().sum().div(taps.numel() * 8 / 9).sqrt())
            lines.append(
                f"| {version} | {name} | {participation_ratio(features):.1f} | {spread:.3f} | {cosines} | {off_centre:.4f} |"
            )
    write_text(OUT, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
