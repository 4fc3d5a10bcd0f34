"""What the workflow runs, worked out from its configuration when it loads: the dataset versions, where each
detector gets its lesion boxes, which pretrainings and fine-tunings exist, which figures are drawn, and the
configuration errors that are cheaper to refuse now than hours into a job.

Standard library and yaml only: Snakemake imports this module while it parses (with --use-conda its environment
is not the jobs' one), and the tests call it without Snakemake. Every function takes the configuration it reads;
``workflow/rules/common.smk`` turns a :class:`PlanError` into Snakemake's error.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from comcl.sources import describe, needs, resolve
from comcl.splits import chest_test_patients, eyeq_patients, validation_problem

Config = Mapping[str, Any]

# Keys that only the fetch rules read: where the data come from, not what they are. The rules that read the data
# do not get them, so that a moved URL reruns the fetch rule alone.
FETCH_KEYS = ("download", "archive", "expected_images", "links_outside_root")
# Keys that only the lesion-truth measurement reads (comcl.patches.truth): a boxes file added reruns it alone.
TRUTH_KEYS = ("lesion_boxes",)

# The keys of a dataset of NIH's format that its own lesion boxes (BBox_List_2017.csv) are read with.
NIH_BOX_KEYS = ("root", "bbox_list", "data_entry", "images")

# torchvision ResNets with ImageNet weights (comcl.weights.IMAGENET_URLS).
IMAGENET_RESNETS = ("resnet18", "resnet34", "resnet50")

# The tables the report writes (comcl.report.paper_tables).
TABLES = ("table1", "table2", "table3")
# Beside them: the linear evaluation, and the paired differences of CoMCL from every other method (comcl.report).
EVIDENCE_TABLES = ("linear_eval", "comparisons")


class PlanError(ValueError):
    """A configuration the workflow cannot plan: the message says which key and what to set."""


def canonical(value: Any) -> Any:
    """``value`` with its keys sorted at every depth: Snakemake compares params as text, so the order in which a
    configuration file lists keys must not make a rule run again."""
    return json.loads(json.dumps(value, sort_keys=True))


def section(config: Config, *keys: str, drop: Iterable[str] = ()) -> Any:
    """A configuration section for `params:`, without the keys ``drop``, in :func:`canonical` form."""
    value: Any = config
    for key in keys:
        value = value[key]
    dropped = set(drop)
    return canonical({k: v for k, v in value.items() if k not in dropped})


# Folders of the checkout that hold the project's own files: no results folder may lie in one.
SHIPPED_FOLDERS = (".ci", ".git", "benchmarks", "config", "docs", "envs", "profiles", "scripts", "src", "tests", "workflow")


def check_results_folder(config: Config, basedir: str | Path) -> None:
    """`results` holds all the workflow writes, the synthetic data included: never the file system's root, the
    checkout (``basedir``) or a folder above it, nor one of the folders the checkout ships (`results: config`
    would overwrite the tracked config/config.yaml with the resolved configuration)."""
    results = config["results"]
    folder, checkout = Path(results).resolve(), Path(basedir).resolve()
    inside_shipped = any(folder.is_relative_to(checkout / name) for name in SHIPPED_FOLDERS)
    if not results.strip() or folder == Path(folder.anchor) or checkout.is_relative_to(folder) or inside_shipped:
        raise PlanError(
            f"results is {results!r}: set it to a folder of its own, such as results/mydata (not the checkout, a folder "
            f"above it, or one of its own folders {', '.join(SHIPPED_FOLDERS)})"
        )


def proportion_versions(config: Config) -> dict[str, float]:
    """The dataset version of each low-quality proportion of `degrade.proportions`, named by its percentage: two
    that round to one name would write one folder, so they are refused."""
    versions: dict[str, float] = {}
    for proportion in config["degrade"]["proportions"]:
        name = f"lq{round(proportion * 100)}"
        if name in versions:
            raise PlanError(
                f"degrade.proportions {versions[name]} and {proportion} are both version {name} (a version is named by "
                "its percentage): keep one, or make them differ by at least 0.01"
            )
        versions[name] = proportion
    return versions


def dataset_versions(config: Config) -> list[str]:
    """A dataset's versions: the original proportion of low-quality images, then each degraded one."""
    return ["original", *proportion_versions(config)]


def written_by_workflow(config: Config, root: str) -> list[str]:
    """A data folder as a rule's input when a rule of this workflow writes it (an embedded synthetic dataset);
    a folder of real data is no rule's output: the fetch rules complete it where it is."""
    generated = {os.path.normpath(f"{config['results']}/synthetic/{name}") for name in config["synthetic"]["datasets"]}
    return [root] if os.path.normpath(root) in generated else []


def lesion_truth_datasets(config: Config) -> list[str]:
    """The datasets whose own lesion boxes measure their patches (``lesion_boxes`` set)."""
    return [name for name, entry in config["datasets"].items() if entry["lesion_boxes"]]


def lesion_boxes_file(config: Config, dataset: str) -> str:
    """A dataset's lesion box file, relative to its root unless absolute."""
    entry = config["datasets"][dataset]
    return str(resolve(entry["root"], entry["lesion_boxes"]))


def lesion_truth_outputs(config: Config) -> list[str]:
    """The lesion-truth measurement of every version of the datasets that have lesion boxes."""
    return [
        f"{config['results']}/{dataset}/{version}/lesion_truth.json"
        for dataset in lesion_truth_datasets(config)
        for version in dataset_versions(config)
    ]


def preprocessed(config: Config, dataset: str) -> bool:
    """Whether a dataset's images go through the fundus preprocessing before indexing."""
    return config["preprocess"]["enabled"] and config["datasets"][dataset]["modality"] == "fundus"


def indexed_dataset(config: Config, dataset: str) -> dict[str, Any]:
    """A dataset's section as the index reads it: a preprocessed dataset's image folders are the preprocessed
    ones, given relative to its root (the index joins them to it)."""
    entry = section(config, "datasets", dataset, drop=FETCH_KEYS + TRUTH_KEYS)
    if preprocessed(config, dataset):
        images = f"{config['results']}/{dataset}/preprocessed/images"
        if entry["format"] == "table":  # the image paths are relative to this folder
            entry["images"] = os.path.relpath(images, entry["root"])
        else:
            entry["images"] = {split: os.path.relpath(f"{images}/{split}", entry["root"]) for split in entry["images"]}
    return entry


def lesion_source(config: Config, dataset: str) -> dict[str, Any]:
    """Where a dataset's detector gets its lesion boxes: `detector.annotations`, else its own box list (a dataset of
    NIH's format); any other dataset without an entry is refused, with the ways to give it boxes."""
    entry = config["datasets"][dataset]
    if dataset not in config["detector"]["annotations"] and entry["format"] != "chestxray14":
        raise PlanError(no_lesion_source(dataset, entry.get("modality")))
    given = config["detector"]["annotations"].get(dataset, {"format": entry["format"]})
    own = {key: entry.get(key) for key in NIH_BOX_KEYS} if entry["format"] == "chestxray14" else {}
    source = {**own, **given} if given["format"] == "chestxray14" else dict(given)
    needed = {"chestxray14": NIH_BOX_KEYS, "coco": ("root", "train", "test")}.get(source["format"], ("root",))
    missing = [key for key in needed if not source.get(key)]
    if missing:
        raise PlanError(
            f"detector.annotations.{dataset} lacks {', '.join(missing)}: the detector of {dataset} needs lesion "
            "boxes, e.g. {format: coco, root: <images folder>, train: train.json, test: test.json} or "
            "{format: idrid, root: <folder holding 'A. Segmentation'>}"
        )
    return dict(sorted(source.items()))


def no_lesion_source(dataset: str, modality: str | None) -> str:
    """The refusal of a dataset that has no `detector.annotations` entry and no box list of its own: what the
    detector needs, and the ways to give it, for the dataset's modality."""
    coco = "{format: coco, root: <images folder>, train: train.json, test: test.json} (a labelling tool's COCO export)"
    if modality == "chest":
        ways = (
            f"either set detector.annotations.{dataset}: {coco}, or give the dataset as format: chestxray14 (NIH's "
            "layout), whose bbox_list (BBox_List_2017.csv by default) holds its boxes"
        )
    else:
        ways = f"set detector.annotations.{dataset}: {coco} or {{format: idrid, root: <folder holding 'A. Segmentation'>}}"
    return f"detector.annotations has no entry for {dataset}: the lesion detector of {dataset} needs lesion boxes; {ways}"


def lesion_sources(config: Config) -> dict[str, dict[str, Any]]:
    return {name: lesion_source(config, name) for name in config["datasets"]}


def missing_data(config: Config) -> tuple[str, str]:
    """Every missing piece of real data, with the step that provides it: what the fetch rules will download or
    extract, and what the user must provide first (each "" when nothing). Folders the workflow writes are not checked."""
    sources = {name: section(config, "datasets", name) for name in config["datasets"]}
    sources |= {
        f"{name} lesions": source for name, source in lesion_sources(config).items() if source["format"] in ("idrid", "coco")
    }
    found = {name: needs(source) for name, source in sources.items() if not written_by_workflow(config, source["root"])}
    fetched = {name: [need for need in found[name] if need.automatic] for name in found}
    manual = {name: [need for need in found[name] if not need.automatic] for name in found}
    return (describe(fetched) if any(fetched.values()) else ""), (describe(manual) if any(manual.values()) else "")


def variant_file(name: str, basedir: str | Path) -> Path:
    """A pretraining variant's file: a name from config/pretrain/ or a path to a .yaml file."""
    path = Path(name) if name.endswith(".yaml") else Path(basedir) / "config" / "pretrain" / f"{name}.yaml"
    if not path.is_file():
        raise PlanError(f"pretraining variant {name!r}: {path} not found")
    return path


def detector_model_file(config: Config, basedir: str | Path) -> str:
    """The detector's MMDetection model file: `detector.model`, a path ending in .py or a name from config/detector/
    (relative to the working directory, as the rules name their inputs)."""
    model = config["detector"]["model"]
    return model if model.endswith(".py") else os.path.relpath(Path(basedir) / "config" / "detector" / f"{model}.py")


def baseline_architectures(basedir: str | Path) -> list[str]:
    """The architectures `finetune.baselines` may name, from the configuration schema."""
    schema = yaml.safe_load((Path(basedir) / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return schema["properties"]["finetune"]["properties"]["baselines"]["items"]["enum"]


def variant_names(config: Config) -> list[str]:
    """The variants of `pretrain.runs`, in the order they are first named."""
    return list(dict.fromkeys(name for run in config["pretrain"]["runs"] for name in run["variants"]))


def pretrain_runs(config: Config) -> list[tuple[str, str]]:
    """(version, variant) pairs of `pretrain.runs`; a version that does not exist is a configuration error."""
    versions = dataset_versions(config)
    runs = config["pretrain"]["runs"]
    unknown = sorted({version for run in runs for version in run["versions"]} - set(versions))
    if unknown:
        raise PlanError(f"pretrain.runs names dataset versions {unknown}: the versions are {versions}")
    return sorted({(version, name) for run in runs for version in run["versions"] for name in run["variants"]})


def pretrained_on(config: Config, version: str) -> list[str]:
    """The variants pretrained on ``version``, in the order `pretrain.runs` first names them: what its linear
    evaluation reads."""
    ran = set(pretrain_runs(config))
    return [name for name in variant_names(config) if (version, name) in ran]


def linear_versions(config: Config) -> list[str]:
    """The dataset versions with a pretrained encoder, each of which gets a linear evaluation."""
    ran = {version for version, _ in pretrain_runs(config)}
    return [version for version in dataset_versions(config) if version in ran]


def finetune_runs(config: Config) -> list[tuple[str, str]]:
    """(version, method) pairs fine-tuned: every baseline on every version, every pretrained encoder where it was
    pretrained."""
    baselines = config["finetune"]["baselines"]
    return sorted(
        {(version, method) for version in dataset_versions(config) for method in baselines} | set(pretrain_runs(config))
    )


def finetune_jobs(config: Config, dataset: str, version: str | None = None) -> list[dict[str, Any]]:
    """The fine-tuning runs of a dataset (of one version), one per method and seed, with their metrics and
    predictions files and,
    for a pretrained method, its pretraining's summary (where its encoder started, which pairs trained)."""
    results, variants = config["results"], set(variant_names(config))
    return [
        {
            "dataset": dataset,
            "version": run_version,
            "method": method,
            "seed": seed,
            "metrics": f"{results}/{dataset}/{run_version}/finetune/{method}/seed{seed}/metrics.json",
            "predictions": f"{results}/{dataset}/{run_version}/finetune/{method}/seed{seed}/predictions.parquet",
            "pretraining": f"{results}/{dataset}/{run_version}/pretrain/{method}/summary.json" if method in variants else None,
        }
        for run_version, method in finetune_runs(config)
        if version in (None, run_version)
        for seed in config["finetune"]["seeds"]
    ]


def finetune_setup(config: Config, method: str) -> dict[str, str]:
    """Architecture and initialisation of a fine-tuning: a pretrained encoder, or a baseline from the family
    the encoders started from (`pretrain.init`), so that every method of a table has the same start."""
    if method in variant_names(config):
        return {"arch": config["pretrain"]["arch"], "init": "encoder"}
    return {"arch": method, "init": config["pretrain"]["init"]}


def check_initialisation(config: Config) -> None:
    """`pretrain.init: imagenet` needs an architecture that has ImageNet weights: say so now, not in the job."""
    arch = config["pretrain"]["arch"]
    if config["pretrain"]["init"] == "imagenet" and arch not in IMAGENET_RESNETS:
        raise PlanError(
            f"pretrain.init is imagenet, but pretrain.arch {arch!r} has no ImageNet weights here: "
            f"use one of {', '.join(IMAGENET_RESNETS)}, or set pretrain.init: scratch"
        )


def method_label(method: str, variants: Mapping[str, Mapping[str, Any]]) -> str:
    """A method as figures name it: a variant's `name` (e.g. "CoMCL"), a baseline's architecture."""
    return variants[method]["name"] if method in variants else method


def figure_methods(version: str, wanted: Sequence[str], runs: Iterable[tuple[str, str]]) -> list[str]:
    """The methods of `wanted` that ran on `version` (figures compare what exists)."""
    ran = {method for run_version, method in runs if run_version == version}
    return [method for method in wanted if method in ran]


def check_figure_methods(config: Config, basedir: str | Path) -> None:
    """Figure method names must be variant files or baseline architectures: a typo would silently drop a panel."""
    figures, architectures = config["figures"], baseline_architectures(basedir)
    named = [("tsne.variants", name) for name in figures["tsne"]["variants"]]
    named += [("gradcam.methods", name) for name in figures["gradcam"]["methods"] if name not in architectures]
    for key, name in named:
        try:
            variant_file(name, basedir)
        except PlanError as error:
            raise PlanError(f"figures.{key} names {name!r}, neither a baseline architecture nor a variant: {error}") from None


def tsne_variants(config: Config, version: str) -> list[str]:
    return figure_methods(version, config["figures"]["tsne"]["variants"], pretrain_runs(config))


def gradcam_methods(config: Config, version: str) -> list[str]:
    return figure_methods(version, config["figures"]["gradcam"]["methods"], finetune_runs(config))


def reported_outputs(config: Config) -> list[str]:
    """Tables and figures of the report: the benchmark summary waits for them."""
    results, datasets, versions = config["results"], list(config["datasets"]), dataset_versions(config)
    finetuned = sorted({version for version, _ in finetune_runs(config)}, key=versions.index)
    tsne = [version for version in versions if tsne_variants(config, version)]
    gradcam = [version for version in versions if gradcam_methods(config, version)]
    return [
        *[f"{results}/tables/{table}.{ext}" for table in TABLES for ext in ("csv", "md", "tex", "html")],
        *[f"{results}/tables/{table}.{ext}" for table in EVIDENCE_TABLES for ext in ("csv", "md")],
        *[f"{results}/figures/{kind}_{d}_{v}.png" for kind in ("finetune", "outcomes") for d in datasets for v in finetuned],
        *[f"{results}/figures/tsne_{d}_{v}.png" for d in datasets for v in tsne],
        *[f"{results}/figures/gradcam_{d}_{v}.png" for d in datasets for v in gradcam],
    ]


def synthetic_train_patients(config: Config, dataset: str) -> int | None:
    """The patients of a dataset's train split when the workflow generates it (known before it exists), else None."""
    root, form = config["datasets"][dataset]["root"], config["datasets"][dataset]["format"]
    if not written_by_workflow(config, root) or os.path.basename(os.path.normpath(root)) != form:
        return None
    spec = config["synthetic"][form]
    if form == "eyeq":
        return eyeq_patients(spec["n_train"])
    return spec["n_patients"] - chest_test_patients(spec["n_patients"], spec["test_patient_share"])


def check_validation_split(config: Config) -> None:
    """`index.val_share` must leave every dataset a train and a validation split: refused now where the
    patients are known (the synthetic datasets); the index stage checks real data, whose patients it counts."""
    for dataset in config["datasets"]:
        patients = synthetic_train_patients(config, dataset)
        problem = None if patients is None else validation_problem(patients, config["index"]["val_share"])
        if problem:
            message, hint = problem
            raise PlanError(f"dataset {dataset}: {message}: {hint}")


def table_header(path: Path) -> list[str] | None:
    """The column names of a label table, or None where there is none to read yet (the fetch rule lists a missing
    file, the index an unreadable one)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def check_quality_labels(config: Config) -> None:
    """A fundus table must label its images' quality: the no-reference score that stands in for missing labels is a
    chest radiograph score (comcl.index.quality). Refused now where the label file is there; the index refuses it
    too (comcl.index.build.require_fundus_quality), for a file that appears later."""
    for dataset, entry in config["datasets"].items():
        if entry["format"] != "table" or entry["modality"] != "fundus":
            continue
        path = resolve(entry["root"], entry["labels"])
        header = table_header(path)
        if header is not None and "quality" not in header:
            raise PlanError(
                f"dataset {dataset}: {path} has no quality column, and a fundus table needs one: the quality score that "
                "stands in for missing labels is a chest radiograph score, which does not measure fundus photographs; "
                "add a column quality with each photograph's quality: EyeQ's Good, Usable or Reject (or 0, 1, 2; Good is "
                "high quality, Usable and Reject low), or high / low"
            )


def check_patch_size(config: Config) -> None:
    """Patches are cut from the images resized to `finetune.input_size` (the scale fine-tuning sees): a patch
    cannot be larger than that image."""
    size, input_size = config["patches"]["size"], config["finetune"]["input_size"]
    if size > input_size:
        raise PlanError(
            f"patches.size {size} is larger than finetune.input_size {input_size}: patches are cut from the images "
            f"resized to finetune.input_size, the scale fine-tuning sees; set patches.size to at most {input_size} "
            f"(the paper: 128 px patches of 512 px images)"
        )


# The total stride of a torchvision ResNet: its last stage sees a map of ceil(side / 32) squared.
RESNET_STRIDE = 32


def check_encoder_input(config: Config) -> None:
    """The views a pretraining encoder sees must give its last stage more than a 1x1 map: on a 1x1 map the
    eight off-centre taps of every 3x3 convolution there meet only padding, so about four fifths of a
    ResNet-18's weights get no gradient from the data, and whatever the optimiser does to them is all they
    learn."""
    for key in ("view_size", "image_view_size"):
        side = config["pretrain"][key]
        if side <= RESNET_STRIDE:
            raise PlanError(
                f"pretrain.{key} is {side} px: a ResNet's last stage sees a 1x1 map at {RESNET_STRIDE} px or less, so the "
                f"off-centre taps of its 3x3 convolutions get no gradient; set pretrain.{key} to at least {RESNET_STRIDE + 1}"
            )
