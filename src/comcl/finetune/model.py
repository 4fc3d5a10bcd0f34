"""Classifiers to fine-tune: a torchvision network with a fresh linear head, from scratch, ImageNet or a pretrained encoder.

The supervised baselines start from the family the contrastive encoders start from (``pretrain.init``):
ImageNet when its weights can be fetched, from scratch otherwise (a compute node may have no internet)
or when so configured; the description returned with the model says which, so that the results
tables can. A pretrained encoder must fit the backbone exactly: a partial load
would fine-tune a half-random network and report it as the pretrained one.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from comcl.checkpoints import save_torch
from comcl.errors import DataError
from comcl.finetune.objective import Objective
from comcl.weights import IMAGENET_URLS, fetch_weights, load_state_dict

log = logging.getLogger(__name__)

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "inception_v3", "densenet121")
INITS = ("scratch", "imagenet", "encoder")
HEADS = {"resnet18": "fc", "resnet34": "fc", "resnet50": "fc", "inception_v3": "fc", "densenet121": "classifier"}
# The smallest input side each network takes (torchvision's ``meta["min_size"]``): Inception-v3's stem
# shrinks without padding, DenseNet's pooling needs a 1 px map at its last block; a ResNet takes any size.
MIN_INPUT_SIZES = {"inception_v3": 75, "densenet121": 29}
# Keys of the ImageNet files that the classifier does not use: Inception-v3's auxiliary head is off.
_UNUSED_IMAGENET_KEYS = ("AuxLogits.",)
# Old DenseNet files name a dense layer's modules 'norm.1', 'conv.2', ...; torchvision renames them on load.
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
_IMAGENET_HINT = "delete the file so that it is downloaded again, or set an ImageNet URL of this architecture"


def _network(arch: str, imagenet: bool) -> nn.Module:
    if arch == "inception_v3":
        # No auxiliary classifier: fine-tuning trains on the main output only. Google's ImageNet weights
        # expect inputs scaled to [-1, 1]; ``transform_input`` converts ImageNet-normalised input to that,
        # as torchvision does when it loads them.
        return torchvision.models.inception_v3(aux_logits=False, init_weights=not imagenet, transform_input=imagenet)
    return getattr(torchvision.models, arch)(weights=None)


def _first(keys: Sequence[str], count: int = 4) -> str:
    return ", ".join(keys[:count]) + (", ..." if len(keys) > count else "")


def read_weights(path: Path, hint: str) -> dict[str, torch.Tensor]:
    try:
        state = load_state_dict(path)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise DataError(f"cannot read the weights: {error}", path=path, hint=hint) from error
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise DataError("not a state dict (a mapping of parameter names to tensors)", path=path, hint=hint)
    return dict(state)


def load_backbone(
    model: nn.Module, arch: str, state: Mapping[str, torch.Tensor], path: Path, unused: tuple[str, ...], hint: str
) -> None:
    """Copy ``state`` into every parameter and buffer of ``model`` but its head, or raise naming what does not fit.

    Keys that start with one of ``unused`` may be in ``state`` and are skipped. BatchNorm's
    ``num_batches_tracked`` may be absent (older torchvision files lack it): it is a counter, not a weight.
    """
    head = HEADS[arch] + "."
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items() if not key.startswith(head)}
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected and not key.startswith(unused)]
    shapes = {key: tuple(state[key].shape) for key in expected if key in state}
    mismatched = [f"{key} {shapes[key]} vs {expected[key]}" for key in shapes if shapes[key] != expected[key]]
    found = {"missing keys": missing, "unexpected keys": unexpected, "keys of another shape (file vs model)": mismatched}
    problems = [f"{len(keys)} {what} ({_first(keys)})" for what, keys in found.items() if keys]
    if problems:
        raise DataError(f"the weights do not fit the {arch} backbone: " + "; ".join(problems), path=path, hint=hint)
    model.load_state_dict({key: value for key, value in state.items() if key in expected}, strict=False)


def _imagenet_state(path: Path) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in read_weights(path, _IMAGENET_HINT).items():
        match = _DENSENET_OLD_KEY.match(key)
        renamed[f"{match.group(1)}{match.group(2)}" if match else key] = value
    return renamed


def build_classifier(
    arch: str,
    num_outputs: int,
    init: str,
    encoder: Path | None = None,
    imagenet_url: str | None = None,
    input_size: int | None = None,
) -> tuple[nn.Module, str]:
    """``arch`` with a fresh ``num_outputs``-way linear head, and how it was initialised.

    ``init``: "scratch"; "imagenet" (``imagenet_url``, by default torchvision's file, and from scratch,
    with a warning, when it cannot be fetched); "encoder" (the backbone from the pretrained ``encoder``
    state dict, which must fit it exactly). The description is "scratch", "imagenet",
    "scratch (ImageNet weights unavailable)" or "encoder <path>". With ``input_size``, an input too small
    for ``arch`` is refused now rather than failing in the first forward pass.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHITECTURES)}")
    if init not in INITS:
        raise ValueError(f"unknown initialisation {init!r}: use one of {', '.join(INITS)}")
    if init == "encoder" and encoder is None:
        raise ValueError("init 'encoder' needs the path of a pretrained encoder")
    minimum = MIN_INPUT_SIZES.get(arch, 1)
    if input_size is not None and input_size < minimum:
        raise ValueError(f"{arch} needs inputs of at least {minimum} x {minimum} px, got {input_size}")

    weights = fetch_weights(imagenet_url or IMAGENET_URLS[arch]) if init == "imagenet" else None
    if init == "imagenet" and weights is None:
        log.warning("ImageNet weights for %s are unavailable: training from scratch", arch)
    model = _network(arch, weights is not None)
    head = getattr(model, HEADS[arch])
    setattr(model, HEADS[arch], nn.Linear(head.in_features, num_outputs))

    if weights is not None:
        unused = (*_UNUSED_IMAGENET_KEYS, HEADS[arch] + ".")
        load_backbone(model, arch, _imagenet_state(weights), weights, unused, _IMAGENET_HINT)
        return model, "imagenet"
    if init == "encoder":
        assert encoder is not None, "refused above"
        encoder = Path(encoder)
        hint = (
            f"pretrain and fine-tune the same ResNet (pretrain.arch must equal the fine-tuning arch, {arch!r} here) "
            "and pass the encoder.pt that pretraining wrote (a plain state dict of the backbone, without `fc`)"
        )
        load_backbone(model, arch, read_weights(encoder, hint), encoder, (), hint)
        return model, f"encoder {encoder}"
    return model, "scratch" if init == "scratch" else "scratch (ImageNet weights unavailable)"


def save_classifier(path: str | Path, model: nn.Module, arch: str, objective: Objective, description: str) -> None:
    """The fine-tuned classifier with what :func:`load_classifier` needs to rebuild it (Grad-CAM, reuse): its
    ``objective`` says how its outputs read. ``description`` is :func:`build_classifier`'s: Inception-v3 converts
    its input only on ImageNet weights."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    task = {"task": objective.task, "num_classes": objective.num_classes, "loss": objective.loss}
    save_torch(path, {"arch": arch, **task, "imagenet": description == "imagenet", "state": state})


def load_classifier(path: str | Path) -> tuple[nn.Module, str, Objective]:
    """A classifier written by :func:`save_classifier`, in eval mode, its architecture and its objective."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        objective = Objective(saved["task"], saved["num_classes"], saved["loss"])
        model = _network(saved["arch"], saved["imagenet"])
        head = getattr(model, HEADS[saved["arch"]])
        setattr(model, HEADS[saved["arch"]], nn.Linear(head.in_features, objective.outputs))
        model.load_state_dict(saved["state"])
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
        raise DataError(
            f"not a fine-tuned classifier of this version: {error}", path=path, hint="run the fine-tuning again"
        ) from error
    return model.eval(), saved["arch"], objective
