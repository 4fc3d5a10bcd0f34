"""Adapter: the patches rule -> comcl.patches.stage.run_patches."""

from comcl.logs import job_log
from comcl.patches.stage import run_patches

with job_log(snakemake.log[0]):
    run_patches(
        index=snakemake.input.index,
        detections=snakemake.input.detections,
        params=snakemake.params.patches,
        input_size=snakemake.params.input_size,
        store=snakemake.output.store,
        summary=snakemake.output.summary,
        workers=snakemake.threads,
    )
