import json
import os
import re
import sys

import yaml
from snakemake.utils import validate
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from comcl.datasets.sources import describe, needs
from comcl.detector.model_files import model_digest
from comcl.index.validation import validation_problem
from comcl.report.context import table_context
from comcl.synth.patients import chest_test_patients, eyeq_patients

RESULTS = config["results"]
DATASETS = list(config["datasets"])
SYNTHETIC = config["synthetic"]["datasets"]


def check_results_folder():
    """`results` holds all the workflow writes, the synthetic data included; never the file system's root."""
    folder = Path(RESULTS).resolve()
    if not RESULTS.strip() or folder == Path(folder.anchor):
        raise WorkflowError(f"results is {RESULTS!r}: set it to a folder of its own, such as results/mydata")


def proportion_versions(proportions):
    """The dataset version of each low-quality proportion, named by its percentage: two that round to one name
    would write one folder, so they are refused."""
    versions = {}
    for proportion in proportions:
        name = f"lq{round(proportion * 100)}"
        if name in versions:
            raise WorkflowError(
                f"degrade.proportions {versions[name]} and {proportion} are both version {name} (a version is named by "
                "its percentage): keep one, or make them differ by at least 0.01"
            )
        versions[name] = proportion
    return versions


check_results_folder()
PROPORTIONS = proportion_versions(config["degrade"]["proportions"])


wildcard_constraints:
    proportion="|".join(PROPORTIONS) or "^$",
    dataset="|".join(DATASETS) or "^$",
    name="|".join(SYNTHETIC) or "^$",


def written_by_workflow(root):
    """A data folder as a rule's input when a rule of this workflow writes it (an embedded synthetic dataset);
    a folder of real data is no rule's output: the fetch rules complete it where it is."""
    generated = {os.path.normpath(f"{RESULTS}/synthetic/{name}") for name in SYNTHETIC}
    return [root] if os.path.normpath(root) in generated else []


def preprocessed(dataset):
    """Whether a dataset's images go through the fundus preprocessing before indexing."""
    return config["preprocess"]["enabled"] and config["datasets"][dataset]["modality"] == "fundus"


# Keys that only the fetch rules read: where the data come from, not what they are. The rules that read the data
# do not get them, so that a moved URL reruns the fetch rule alone.
FETCH_KEYS = ("download", "archive", "expected_images")


def dataset_section(dataset):
    return section("datasets", dataset, drop=FETCH_KEYS)


def fetched_dataset(wildcards):
    """The inputs that stand for a dataset: its fetch summary, whose time stamp does not count (a fetch rerun
    for a moved URL leaves the data as they were), and the dataset's folder if a rule of the workflow writes it."""
    root = config["datasets"][wildcards.dataset]["root"]
    return [ancient(rules.fetch_dataset.output[0].format(**wildcards)), *written_by_workflow(root)]


def indexed_dataset(wildcards):
    """A dataset's section as the index reads it: a preprocessed dataset's image folders are the preprocessed
    ones, given relative to its root (the index joins them to it)."""
    dataset = dataset_section(wildcards.dataset)
    if preprocessed(wildcards.dataset):
        images = f"{RESULTS}/{wildcards.dataset}/preprocessed/images"
        if dataset["format"] == "table":  # the image paths are relative to this folder
            dataset["images"] = os.path.relpath(images, dataset["root"])
        else:
            dataset["images"] = {split: os.path.relpath(f"{images}/{split}", dataset["root"]) for split in dataset["images"]}
    return dataset


NIH_BOX_KEYS = ["root", "bbox_list", "data_entry", "images"]

# A dataset version: the original proportion of low-quality images, or a degraded one.
VERSIONS = ["original", *PROPORTIONS]


wildcard_constraints:
    version="|".join(VERSIONS),


def lesion_source(dataset):
    """Where a dataset's detector gets its lesion boxes: `detector.annotations`, else its own box list."""
    entry = config["datasets"][dataset]
    given = config["detector"]["annotations"].get(dataset, {"format": entry["format"]})
    own = {key: entry.get(key) for key in NIH_BOX_KEYS} if entry["format"] == "chestxray14" else {}
    source = {**own, **given} if given["format"] == "chestxray14" else dict(given)
    needed = {"chestxray14": NIH_BOX_KEYS, "coco": ["root", "train", "test"]}.get(source["format"], ["root"])
    missing = [key for key in needed if not source.get(key)]
    if missing:
        raise WorkflowError(
            f"detector.annotations.{dataset} lacks {', '.join(missing)}: the detector of {dataset} needs lesion "
            "boxes, e.g. {format: coco, root: <images folder>, train: train.json, test: test.json} or "
            "{format: idrid, root: <folder holding 'A. Segmentation'>}"
        )
    return dict(sorted(source.items()))


LESION_SOURCES = {name: lesion_source(name) for name in DATASETS}


def fetched_lesions(wildcards):
    """What a detector's boxes wait for, as `fetched_dataset`: its IDRiD tree or COCO files (checked by the fetch rule),
    or its own dataset for NIH's box list."""
    source = LESION_SOURCES[wildcards.dataset]
    if source["format"] not in ("idrid", "coco"):
        return fetched_dataset(wildcards)
    inputs = [ancient(rules.fetch_lesions.output[0].format(**wildcards)), *written_by_workflow(source["root"])]
    if source["format"] == "coco":
        # Once there, the COCO files count by their time stamps: a new export from the labelling tool retrains the detector.
        files = [os.path.join(source["root"], source[split]) for split in ("train", "test")]
        inputs += [path for path in files if os.path.exists(path)]
    return inputs


def report_missing_data():
    """Name every missing piece of real data when the workflow loads, with the step that provides it, so that
    `snakemake -n` says all there is to do before any job starts. Folders the workflow writes are not checked."""
    sources = {name: section("datasets", name) for name in DATASETS}
    sources |= {f"{name} lesions": source for name, source in LESION_SOURCES.items() if source["format"] in ("idrid", "coco")}
    found = {name: needs(source) for name, source in sources.items() if not written_by_workflow(source["root"])}
    manual = {name: [need for need in found[name] if not need.automatic] for name in found}
    fetched = {name: [need for need in found[name] if need.automatic] for name in found}
    if any(fetched.values()):
        logger.info(f"The fetch rules will download or extract:\n{describe(fetched)}")
    if any(manual.values()):
        logger.warning(
            f"Data to provide before the fetch rules can complete (they stop with this list until then):\n{describe(manual)}"
        )


_model = config["detector"]["model"]
_model_file = _model if _model.endswith(".py") else os.path.relpath(Path(workflow.basedir) / "config" / "detector" / f"{_model}.py")
# The detector rules rerun when the model's content changes (the digest is a param), not when a checkout moved or
# cloned again gives its file another path or time stamp.
DETECTOR_MODEL = ancient(_model_file)
DETECTOR_MODEL_DIGEST = model_digest(_model_file)


def load_variant(name):
    """A pretraining variant: a name from config/pretrain/ or a path to a .yaml file, validated."""
    path = Path(name) if name.endswith(".yaml") else Path(workflow.basedir) / "config" / "pretrain" / f"{name}.yaml"
    if not path.is_file():
        raise WorkflowError(f"pretraining variant {name!r}: {path} not found")
    variant = yaml.safe_load(path.read_text())
    validate(variant, str(Path(workflow.basedir) / "workflow" / "schemas" / "variant.schema.yaml"))
    return json.loads(json.dumps(variant, sort_keys=True))


def pretrain_runs():
    """(version, variant) pairs of `pretrain.runs`; a version that does not exist is a configuration error."""
    runs = config["pretrain"]["runs"]
    unknown = sorted({version for run in runs for version in run["versions"]} - set(VERSIONS))
    if unknown:
        raise WorkflowError(f"pretrain.runs names dataset versions {unknown}: the versions are {VERSIONS}")
    return sorted({(version, name) for run in runs for version in run["versions"] for name in run["variants"]})


VARIANTS = {name: load_variant(name) for run in config["pretrain"]["runs"] for name in run["variants"]}
PRETRAIN_RUNS = pretrain_runs()


wildcard_constraints:
    variant="|".join(re.escape(name) for name in VARIANTS) or "^$",


BASELINES = config["finetune"]["baselines"]
FINETUNE_RUNS = sorted({(version, method) for version in VERSIONS for method in BASELINES} | set(PRETRAIN_RUNS))
SEEDS = config["finetune"]["seeds"]


wildcard_constraints:
    method="|".join(re.escape(name) for name in [*BASELINES, *VARIANTS]) or "^$",
    seed=r"\d+",


def finetune_setup(wildcards):
    """Architecture and initialisation of a fine-tuning: a pretrained encoder, or a baseline from the family
    the encoders started from (`pretrain.init`), so that every method of a table has the same start."""
    if wildcards.method in VARIANTS:
        return {"arch": config["pretrain"]["arch"], "init": "encoder"}
    return {"arch": wildcards.method, "init": config["pretrain"]["init"]}


# torchvision ResNets with ImageNet weights (comcl.weights.IMAGENET_URLS).
IMAGENET_RESNETS = ("resnet18", "resnet34", "resnet50")


def check_initialisation():
    """`pretrain.init: imagenet` needs an architecture that has ImageNet weights: say so now, not in the job."""
    arch = config["pretrain"]["arch"]
    if config["pretrain"]["init"] == "imagenet" and arch not in IMAGENET_RESNETS:
        raise WorkflowError(
            f"pretrain.init is imagenet, but pretrain.arch {arch!r} has no ImageNet weights here: "
            f"use one of {', '.join(IMAGENET_RESNETS)}, or set pretrain.init: scratch"
        )


check_initialisation()


def section(*keys, drop=()):
    """A configuration section for `params:`, keys sorted at every depth: Snakemake compares params as
    text, so the order in which a config file lists keys must not make a rule run again."""
    value = config
    for key in keys:
        value = value[key]
    return json.loads(json.dumps({k: v for k, v in value.items() if k not in drop}, sort_keys=True))


def method_label(method):
    """A method as figures name it: a variant's `name` (e.g. "CoMCL"), a baseline's architecture."""
    return VARIANTS[method]["name"] if method in VARIANTS else method


def finetune_runs(dataset, version=None):
    """The fine-tuning runs of a dataset (of one version), one per method and seed, with their metrics file and,
    for a pretrained method, its pretraining's summary (where its encoder started, which pairs trained)."""
    return [
        {
            "dataset": dataset,
            "version": run_version,
            "method": method,
            "seed": seed,
            "metrics": f"{RESULTS}/{dataset}/{run_version}/finetune/{method}/seed{seed}/metrics.json",
            "pretraining": f"{RESULTS}/{dataset}/{run_version}/pretrain/{method}/summary.json" if method in VARIANTS else None,
        }
        for run_version, method in FINETUNE_RUNS
        if version in (None, run_version)
        for seed in SEEDS
    ]


def figure_methods(version, wanted, runs):
    """The methods of `wanted` that ran on `version` (figures compare what exists)."""
    ran = {method for run_version, method in runs if run_version == version}
    return [method for method in wanted if method in ran]


def check_figure_methods():
    """Figure method names must be variant files or baseline architectures: a typo would silently drop a panel."""
    architectures = config_schema["properties"]["finetune"]["properties"]["baselines"]["items"]["enum"]
    named = [("tsne.variants", name) for name in config["figures"]["tsne"]["variants"]]
    named += [("gradcam.methods", name) for name in config["figures"]["gradcam"]["methods"] if name not in architectures]
    for key, name in named:
        try:
            load_variant(name)
        except WorkflowError as error:
            raise WorkflowError(f"figures.{key} names {name!r}, neither a baseline architecture nor a variant: {error}")


config_schema = yaml.safe_load((Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml").read_text())
check_figure_methods()
TSNE_VERSIONS = [v for v in VERSIONS if figure_methods(v, config["figures"]["tsne"]["variants"], PRETRAIN_RUNS)]
GRADCAM_VERSIONS = [v for v in VERSIONS if figure_methods(v, config["figures"]["gradcam"]["methods"], FINETUNE_RUNS)]
FINETUNE_VERSIONS = sorted({version for version, _ in FINETUNE_RUNS}, key=VERSIONS.index)


TABLES = ["table1", "table2", "table3"]


def tsne_variants(wildcards):
    return figure_methods(wildcards.version, config["figures"]["tsne"]["variants"], PRETRAIN_RUNS)


def gradcam_models(wildcards):
    methods = figure_methods(wildcards.version, config["figures"]["gradcam"]["methods"], FINETUNE_RUNS)
    return {
        method_label(method): rules.finetune.output.model.format(method=method, seed=SEEDS[0], **wildcards)
        for method in methods
    }


def reported_outputs():
    """Tables and figures of the report: the benchmark summary waits for them."""
    return [
        *[f"{RESULTS}/tables/{table}.{ext}" for table in TABLES for ext in ("csv", "md", "tex", "html")],
        *[f"{RESULTS}/figures/{kind}_{d}_{v}.png" for kind in ("finetune", "outcomes") for d in DATASETS for v in FINETUNE_VERSIONS],
        *[f"{RESULTS}/figures/tsne_{d}_{v}.png" for d in DATASETS for v in TSNE_VERSIONS],
        *[f"{RESULTS}/figures/gradcam_{d}_{v}.png" for d in DATASETS for v in GRADCAM_VERSIONS],
    ]


def synthetic_train_patients(dataset):
    """The patients of a dataset's train split when the workflow generates it (known before it exists), else None."""
    root, form = config["datasets"][dataset]["root"], config["datasets"][dataset]["format"]
    if not written_by_workflow(root) or os.path.basename(os.path.normpath(root)) != form:
        return None
    spec = config["synthetic"][form]
    if form == "eyeq":
        return eyeq_patients(spec["n_train"])
    return spec["n_patients"] - chest_test_patients(spec["n_patients"], spec["test_patient_share"])


def check_validation_split():
    """`index.val_share` must leave every dataset a train and a validation split: refused now where the
    patients are known (the synthetic datasets); the index stage checks real data, whose patients it counts."""
    for dataset in DATASETS:
        patients = synthetic_train_patients(dataset)
        problem = None if patients is None else validation_problem(patients, config["index"]["val_share"])
        if problem:
            message, hint = problem
            raise WorkflowError(f"dataset {dataset}: {message}: {hint}")


def check_lesion_scale():
    """Patches are cut from the images resized to `finetune.input_size` (the scale fine-tuning sees): a patch
    cannot be larger than that image."""
    size, image_size = config["patches"]["size"], config["finetune"]["input_size"]
    if size > image_size:
        raise WorkflowError(
            f"patches.size {size} is larger than finetune.input_size {image_size}: patches are cut from the images "
            f"resized to finetune.input_size, the scale fine-tuning sees; set patches.size to at most {image_size} "
            f"(the paper: 128 px patches of 512 px images)"
        )


check_validation_split()
check_lesion_scale()
report_missing_data()
