"""Adapter: the preprocess rule -> comcl.datasets.preprocess.run_preprocess."""

from comcl.datasets.preprocess import run_preprocess
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    run_preprocess(
        dataset=snakemake.params.dataset,  # noqa: F821
        destination=snakemake.output.images,  # noqa: F821
        work=snakemake.params.work_dir,  # noqa: F821
        summary=snakemake.output.summary,  # noqa: F821
        size=snakemake.params.size,  # noqa: F821
        workers=snakemake.threads,  # noqa: F821
    )
