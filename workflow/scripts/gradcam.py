"""Adapter: the gradcam rule -> comcl.report.gradcam.run_gradcam."""

from comcl.logs import job_log
from comcl.report.gradcam import run_gradcam
from comcl.threads import limit_threads

with job_log(snakemake.log[0]):
    limit_threads(snakemake.params.threads or snakemake.threads)
    run_gradcam(
        index=snakemake.input.index,
        models=snakemake.params.models,
        input_size=snakemake.params.input_size,
        count=snakemake.params.gradcam["images"],
        seed=snakemake.params.gradcam["seed"],
        figure=snakemake.output.figure,
    )
