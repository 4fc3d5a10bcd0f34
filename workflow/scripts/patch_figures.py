"""Adapter: the patch_figures rule -> comcl.patches.figures.run_patch_figures."""

from comcl.logs import job_log
from comcl.patches.figures import run_patch_figures

with job_log(snakemake.log[0]):
    run_patch_figures(
        index=snakemake.input.index,
        detections=snakemake.input.detections,
        store=snakemake.input.store,
        summary=snakemake.input.summary,
        params=snakemake.params.patches,
        windows=snakemake.output.windows,
        mosaic=snakemake.output.mosaic,
    )
