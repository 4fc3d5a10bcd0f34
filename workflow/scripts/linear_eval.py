"""Adapter: the linear_eval rule -> comcl.finetune.linear.linear_evaluation."""

from comcl.finetune.linear import linear_evaluation
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    linear_evaluation(
        index=snakemake.input.index,  # noqa: F821
        encoders=snakemake.params.encoders,  # noqa: F821
        params=snakemake.params.linear,  # noqa: F821
        metrics=snakemake.output.metrics,  # noqa: F821
        predictions=snakemake.output.predictions,  # noqa: F821
        threads=snakemake.params.threads or snakemake.threads,  # noqa: F821
    )
