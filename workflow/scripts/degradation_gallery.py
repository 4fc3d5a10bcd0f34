"""Adapter: the degradation_gallery rule -> comcl.degrade.gallery.draw_gallery."""

from comcl.degrade.gallery import draw_gallery

from comcl.io import read_table
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    index, meta = read_table(snakemake.input.table)  # noqa: F821
    draw_gallery(index, meta, snakemake.output[0], seed=snakemake.params.seed)  # noqa: F821
