"""Adapter: the degrade rule -> comcl.degrade.stage.run_degrade."""

from comcl.degrade.stage import run_degrade
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    run_degrade(
        index=snakemake.input.table,
        target=snakemake.params.target,
        degrade_test=snakemake.params.degrade_test,
        seed=snakemake.params.seed,
        table=snakemake.output.table,
        images=snakemake.output.images,
        summary=snakemake.output.summary,
        workers=snakemake.threads,
    )
