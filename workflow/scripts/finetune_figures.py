"""Adapter: the finetune_figures rule -> comcl.finetune.figures."""

from comcl.finetune.figures import run_finetune_figures
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    run_finetune_figures(
        runs=snakemake.params.runs,  # noqa: F821
        title=f"{snakemake.wildcards.dataset}, {snakemake.wildcards.version}",  # noqa: F821
        curves=snakemake.output.curves,  # noqa: F821
        outcomes=snakemake.output.outcomes,  # noqa: F821
    )
