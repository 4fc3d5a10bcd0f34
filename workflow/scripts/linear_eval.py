"""Adapter: the linear_eval rule -> comcl.finetune.linear.linear_evaluation."""

from comcl.finetune.linear import linear_evaluation
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    linear_evaluation(
        index=snakemake.input.index,
        encoders=snakemake.params.encoders,
        params=snakemake.params.linear,
        metrics=snakemake.output.metrics,
        predictions=snakemake.output.predictions,
        threads=snakemake.params.threads or snakemake.threads,
    )
