"""Adapter: the tables rule -> comcl.report.tables.write_tables."""

from pathlib import Path

from comcl.logs import job_log
from comcl.report.tables import write_tables

with job_log(snakemake.log[0]):  # noqa: F821
    context = snakemake.params.context  # noqa: F821
    write_tables(
        runs=snakemake.params.runs,  # noqa: F821
        variants=snakemake.params.variants,  # noqa: F821
        context=context,
        folder=Path(snakemake.output.tables[0]).parent,  # noqa: F821
        indexes=dict(zip(context["datasets"], snakemake.input.indexes, strict=True)),  # noqa: F821
        truths=snakemake.input.truths,  # noqa: F821
    )
