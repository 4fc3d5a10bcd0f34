"""Adapter: the degradation_gallery rule -> comcl.degrade.gallery.run_degradation_gallery."""

from comcl.degrade.gallery import run_degradation_gallery
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    run_degradation_gallery(
        index=snakemake.input.table,  # noqa: F821
        figure=snakemake.output[0],  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
    )
