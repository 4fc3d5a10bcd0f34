import os
import re

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from comcl import plan
from comcl.detector.model_files import model_digest
from comcl.report.context import table_context
from comcl.schema import VARIANT_SCHEMA_FILE, config_problem, renamed_problem


def planned(function, *args):
    """A comcl.plan result, its refusal of the configuration shown as the workflow's error."""
    try:
        return function(config, *args)
    except plan.PlanError as error:
        raise WorkflowError(str(error)) from None


def load_variant(name):
    """A pretraining variant (config/pretrain/<name>.yaml or a path), validated, defaults filled in."""
    try:
        path = plan.variant_file(name, workflow.basedir)
    except plan.PlanError as error:
        raise WorkflowError(str(error)) from None
    variant = yaml.safe_load(path.read_text())
    if problem := renamed_problem(variant, VARIANT_SCHEMA_FILE, f"pretraining variant {path}"):
        raise WorkflowError(problem)
    try:
        validate(variant, str(Path(workflow.basedir) / VARIANT_SCHEMA_FILE))
    except WorkflowError as error:
        raise WorkflowError(f"pretraining variant {path}: {config_problem(error, VARIANT_SCHEMA_FILE)}") from None
    return plan.canonical(variant)


planned(plan.check_results_folder, workflow.basedir)
RESULTS = config["results"]
DATASETS = list(config["datasets"])
SYNTHETIC = config["synthetic"]["datasets"]
PROPORTIONS = planned(plan.proportion_versions)
VERSIONS = plan.dataset_versions(config)
LESION_SOURCES = planned(plan.lesion_sources)
VARIANTS = {name: load_variant(name) for name in plan.variant_names(config)}
PRETRAIN_RUNS = planned(plan.pretrain_runs)
FINETUNE_RUNS = plan.finetune_runs(config)
LINEAR_VERSIONS = plan.linear_versions(config)
BASELINES = config["finetune"]["baselines"]
SEEDS = config["finetune"]["seeds"]
TABLES = plan.TABLES
FETCH_KEYS = plan.FETCH_KEYS

planned(plan.check_initialisation)
planned(plan.check_figure_methods, workflow.basedir)
planned(plan.check_validation_split)
planned(plan.check_quality_labels)
planned(plan.check_patch_size)
planned(plan.check_encoder_input)
_to_fetch, _to_provide = plan.missing_data(config)
if _to_fetch:
    logger.info(f"The fetch rules will download or extract:\n{_to_fetch}")
if _to_provide:
    logger.warning(f"Data to provide before the fetch rules can complete (they stop with this list until then):\n{_to_provide}")

_model_file = plan.detector_model_file(config, workflow.basedir)
# The detector rules rerun when the model's content changes (the digest is a param), not when a checkout moved or
# cloned again gives its file another path or time stamp.
DETECTOR_MODEL = ancient(_model_file)
DETECTOR_MODEL_DIGEST = model_digest(_model_file)


wildcard_constraints:
    proportion="|".join(PROPORTIONS) or "^$",
    dataset="|".join(DATASETS) or "^$",
    name="|".join(SYNTHETIC) or "^$",
    version="|".join(VERSIONS),
    variant="|".join(re.escape(name) for name in VARIANTS) or "^$",
    method="|".join(re.escape(name) for name in [*BASELINES, *VARIANTS]) or "^$",
    seed=r"\d+",


# A PyTorch job's intra-op threads: the configured number (the same whatever --cores), else the job's cores. The
# rules pass `threads` itself as a param, so that another --cores does not rerun them.
TORCH_THREADS = config["threads"] or workflow.cores


def index_table(version):
    """A dataset version's index (`version` a name or a wildcard such as "{proportion}")."""
    return f"{RESULTS}/{{dataset}}/{version}/index.parquet"


def section(*keys, drop=()):
    return plan.section(config, *keys, drop=drop)


def fetched_dataset(wildcards):
    """The inputs that stand for a dataset: its fetch summary, whose time stamp does not count (a fetch rerun
    for a moved URL leaves the data as they were), and the dataset's folder if a rule of the workflow writes it."""
    root = config["datasets"][wildcards.dataset]["root"]
    return [ancient(rules.fetch_dataset.output[0].format(**wildcards)), *plan.written_by_workflow(config, root)]


def fetched_lesions(wildcards):
    """What a detector's boxes wait for, as `fetched_dataset`: its IDRiD tree or COCO files (checked by the fetch rule),
    or its own dataset for NIH's box list."""
    source = LESION_SOURCES[wildcards.dataset]
    if source["format"] not in ("idrid", "coco"):
        return fetched_dataset(wildcards)
    inputs = [ancient(rules.fetch_lesions.output[0].format(**wildcards)), *plan.written_by_workflow(config, source["root"])]
    if source["format"] == "coco":
        # Once there, the COCO files count by their time stamps: a new export from the labelling tool retrains the detector.
        files = [os.path.join(source["root"], source[split]) for split in ("train", "test")]
        inputs += [path for path in files if os.path.exists(path)]
    return inputs


def finetune_jobs(dataset, version=None):
    return plan.finetune_jobs(config, dataset, version)


def method_label(method):
    return plan.method_label(method, VARIANTS)


def tsne_variants(wildcards):
    return plan.tsne_variants(config, wildcards.version)


def gradcam_models(wildcards):
    return {
        method_label(method): rules.finetune.output.model.format(method=method, seed=SEEDS[0], **wildcards)
        for method in plan.gradcam_methods(config, wildcards.version)
    }
