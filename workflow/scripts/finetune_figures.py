"""Adapter: the finetune_figures rule -> comcl.finetune.figures."""

from comcl.finetune.figures import run_finetune_figures
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    run_finetune_figures(
        runs=snakemake.params.runs,
        title=f"{snakemake.wildcards.dataset}, {snakemake.wildcards.version}",
        curves=snakemake.output.curves,
        outcomes=snakemake.output.outcomes,
    )
