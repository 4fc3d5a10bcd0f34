"""Adapter: the index rule -> comcl.index.build.run_index."""

from comcl.index.build import run_index
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    run_index(
        name=snakemake.wildcards.dataset,
        dataset=snakemake.params.dataset,
        check=snakemake.params.check_images,
        workers=snakemake.threads,
        val_share=snakemake.params.val_share,
        seed=snakemake.params.seed,
        table=snakemake.output.table,
        summary=snakemake.output.summary,
    )
