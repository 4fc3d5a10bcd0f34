# comcl: CoMCL as a Snakemake workflow. `snakemake --cores all` runs the embedded synthetic demo;
# `snakemake --cores all --configfile config/paper.yaml` runs the paper configuration on real data: a configuration
# file given on the command line starts from the schema's defaults (config/README.md), not from the demo.
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


# A configuration starts from the schema's defaults, the paper's values. The demo's file applies only when no
# --configfile is given, so that a user's file needs only what differs from the paper and no demo value (its
# batch of 8, its 2 epochs) slips into a run that did not ask for it.
if not workflow.overwrite_configfiles:

    configfile: Path(workflow.basedir) / "config" / "config.yaml"


# The load-time checks need only the standard library, from the repository itself (with --use-conda, Snakemake's
# environment is not the jobs' one).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from comcl import results_lock
from comcl.schema import SCHEMA_FILE, config_problem, renamed_problem, size_problem

if problem := size_problem(config) or renamed_problem(config):
    raise WorkflowError(problem)
try:
    validate(config, SCHEMA_FILE)
except WorkflowError as error:
    raise WorkflowError(config_problem(error)) from None


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synthesize.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/degrade.smk"
include: "workflow/rules/detector.smk"
include: "workflow/rules/patches.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/report.smk"


# One workflow at a time writes a results folder, whichever checkout or working folder it runs from.
onstart:
    results_lock.acquire(RESULTS, workflow.basedir)


onsuccess:
    results_lock.release(RESULTS)


onerror:
    results_lock.release(RESULTS)


# On a cluster, the cheap rules (tables, figures, gathering) and the downloads (compute nodes may have no
# internet) run on the machine that submits the jobs.
localrules:
    all,
    resolved_config,
    fetch_dataset,
    fetch_lesions,
    degradation_gallery,
    patch_figures,
    finetune_figures,
    tables,
    linear_table,
    comparisons,
    benchmark_summary,


rule all:
    default_target: True
    input:
        rules.resolved_config.output,
        expand(f"{RESULTS}/figures/contact_sheet_{{name}}.png", name=SYNTHETIC),
        expand(
            f"{RESULTS}/{{dataset}}/original/{{file}}",
            dataset=DATASETS,
            file=["index.parquet", "summary.json"],
        ),
        expand(
            f"{RESULTS}/{{dataset}}/{{proportion}}/{{file}}",
            dataset=DATASETS,
            proportion=PROPORTIONS,
            file=["index.parquet", "summary.json"],
        ),
        expand(f"{RESULTS}/figures/degradations_{{dataset}}.png", dataset=DATASETS),
        expand(f"{RESULTS}/{{dataset}}/detector/metrics.json", dataset=DATASETS),
        expand(
            f"{RESULTS}/{{dataset}}/{{version}}/patches.{{ext}}",
            dataset=DATASETS,
            version=VERSIONS,
            ext=["parquet", "json"],
        ),
        expand(
            f"{RESULTS}/figures/patch_{{kind}}_{{dataset}}_{{version}}.png",
            kind=["windows", "mosaic"],
            dataset=DATASETS,
            version=VERSIONS,
        ),
        [
            f"{RESULTS}/{dataset}/{version}/pretrain/{variant}/encoder.pt"
            for dataset in DATASETS
            for version, variant in PRETRAIN_RUNS
        ],
        plan.lesion_truth_outputs(config),
        plan.reported_outputs(config),
        rules.benchmark_summary.output,
