"""Adapter: the comparisons rule -> comcl.report.comparisons.compare_runs."""

from comcl.logs import job_log
from comcl.report.comparisons import compare_runs

with job_log(snakemake.log[0]):  # noqa: F821
    compare_runs(
        finetuned=snakemake.params.finetuned,  # noqa: F821
        linear=snakemake.params.linear,  # noqa: F821
        indexes=snakemake.params.indexes,  # noqa: F821
        params=snakemake.params.comparisons,  # noqa: F821
        labels=snakemake.params.labels,  # noqa: F821
        csv=snakemake.output.csv,  # noqa: F821
        markdown=snakemake.output.markdown,  # noqa: F821
    )
