"""Adapter: the patch_figures rule -> comcl.patches.figures.run_patch_figures."""

from comcl.logs import job_log
from comcl.patches.figures import run_patch_figures

with job_log(snakemake.log[0]):  # noqa: F821
    run_patch_figures(
        index=snakemake.input.index,  # noqa: F821
        detections=snakemake.input.detections,  # noqa: F821
        store=snakemake.input.store,  # noqa: F821
        summary=snakemake.input.summary,  # noqa: F821
        params=snakemake.params.patches,  # noqa: F821
        windows=snakemake.output.windows,  # noqa: F821
        mosaic=snakemake.output.mosaic,  # noqa: F821
    )
