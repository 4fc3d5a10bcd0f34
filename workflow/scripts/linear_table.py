"""Adapter: the linear_table rule -> comcl.report.linear_eval.write_linear_table."""

from comcl.logs import job_log
from comcl.report.linear_eval import write_linear_table

with job_log(snakemake.log[0]):  # noqa: F821
    write_linear_table(
        files={tuple(run): path for run, path in zip(snakemake.params.runs, snakemake.input.metrics, strict=True)},  # noqa: F821
        labels=snakemake.params.labels,  # noqa: F821
        csv=snakemake.output.csv,  # noqa: F821
        markdown_file=snakemake.output.markdown,  # noqa: F821
    )
