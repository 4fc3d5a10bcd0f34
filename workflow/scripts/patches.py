"""Adapter: the patches rule -> comcl.patches.stage.run_patches."""

from comcl.logs import job_log
from comcl.patches.stage import run_patches

with job_log(snakemake.log[0]):  # noqa: F821
    run_patches(
        index=snakemake.input.index,  # noqa: F821
        detections=snakemake.input.detections,  # noqa: F821
        params=snakemake.params.patches,  # noqa: F821
        image_size=snakemake.params.image_size,  # noqa: F821
        store=snakemake.output.store,  # noqa: F821
        summary=snakemake.output.summary,  # noqa: F821
        workers=snakemake.threads,  # noqa: F821
    )
