"""Adapter: the linear_table rule -> comcl.report.linear_eval.write_linear_table."""

from comcl.logs import job_log
from comcl.report.linear_eval import write_linear_table

with job_log(snakemake.log[0]):
    write_linear_table(
        files={tuple(run): path for run, path in zip(snakemake.params.runs, snakemake.input.metrics, strict=True)},
        labels=snakemake.params.labels,
        csv=snakemake.output.csv,
        markdown_file=snakemake.output.markdown,
    )
