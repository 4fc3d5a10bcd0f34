"""Adapter: the preprocess rule -> comcl.datasets.preprocess.run_preprocess."""

from comcl.datasets.preprocess import run_preprocess
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    run_preprocess(
        dataset=snakemake.params.dataset,
        destination=snakemake.output.images,
        work=snakemake.params.work_dir,
        summary=snakemake.output.summary,
        size=snakemake.params.size,
        workers=snakemake.threads,
    )
