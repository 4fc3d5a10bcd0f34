"""Adapter: the index rule -> comcl.index.build.run_index."""

from comcl.index.build import run_index
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    run_index(
        name=snakemake.wildcards.dataset,  # noqa: F821
        dataset=snakemake.params.dataset,  # noqa: F821
        check=snakemake.params.check_images,  # noqa: F821
        workers=snakemake.threads,  # noqa: F821
        val_share=snakemake.params.val_share,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        table=snakemake.output.table,  # noqa: F821
        summary=snakemake.output.summary,  # noqa: F821
    )
