"""Adapter: the tables rule -> comcl.report.paper_tables.write_tables."""

from pathlib import Path

from comcl.logs import job_log
from comcl.report.paper_tables import write_tables

with job_log(snakemake.log[0]):
    context = snakemake.params.context
    write_tables(
        runs=snakemake.params.runs,
        variants=snakemake.params.variants,
        context=context,
        folder=Path(snakemake.output.tables[0]).parent,
        indexes=dict(zip(context["datasets"], snakemake.input.indexes, strict=True)),
        truths=snakemake.input.truths,
    )
