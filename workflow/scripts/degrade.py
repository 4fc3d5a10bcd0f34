"""Adapter: the degrade rule -> comcl.degrade.stage.run_degrade."""

from comcl.degrade.stage import run_degrade
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    run_degrade(
        index=snakemake.input.table,  # noqa: F821
        target=snakemake.params.target,  # noqa: F821
        degrade_test=snakemake.params.degrade_test,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        table=snakemake.output.table,  # noqa: F821
        images=snakemake.output.images,  # noqa: F821
        summary=snakemake.output.summary,  # noqa: F821
        workers=snakemake.threads,  # noqa: F821
    )
