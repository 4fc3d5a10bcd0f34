"""Adapter: the tsne rule -> comcl.report.embeddings.run_tsne."""

from comcl.logs import job_log
from comcl.report.embeddings import run_tsne

with job_log(snakemake.log[0]):
    run_tsne(
        store=snakemake.input.store,
        encoders=snakemake.params.encoders,
        arch=snakemake.params.arch,
        view_size=snakemake.params.view_size,
        per_level=snakemake.params.tsne["per_level"],
        seed=snakemake.params.tsne["seed"],
        figure=snakemake.output.figure,
        summary=snakemake.output.summary,
        threads=snakemake.params.threads or snakemake.threads,
    )
