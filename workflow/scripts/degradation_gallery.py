"""Adapter: the degradation_gallery rule -> comcl.degrade.gallery.run_degradation_gallery."""

from comcl.degrade.gallery import run_degradation_gallery
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    run_degradation_gallery(
        index=snakemake.input.table,
        figure=snakemake.output[0],
        seed=snakemake.params.seed,
    )
