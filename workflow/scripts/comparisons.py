"""Adapter: the comparisons rule -> comcl.report.comparisons.compare_runs."""

from comcl.logs import job_log
from comcl.report.comparisons import compare_runs

with job_log(snakemake.log[0]):
    compare_runs(
        finetuned=snakemake.params.finetuned,
        linear=snakemake.params.linear,
        indexes=snakemake.params.indexes,
        params=snakemake.params.comparisons,
        labels=snakemake.params.labels,
        csv=snakemake.output.csv,
        markdown=snakemake.output.markdown,
    )
