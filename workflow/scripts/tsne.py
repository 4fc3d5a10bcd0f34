"""Adapter: the tsne rule -> comcl.report.embeddings.run_tsne."""

from comcl.logs import job_log
from comcl.report.embeddings import run_tsne

with job_log(snakemake.log[0]):  # noqa: F821
    run_tsne(
        store=snakemake.input.store,  # noqa: F821
        encoders=snakemake.params.encoders,  # noqa: F821
        arch=snakemake.params.arch,  # noqa: F821
        input_size=snakemake.params.input_size,  # noqa: F821
        per_level=snakemake.params.tsne["per_level"],  # noqa: F821
        seed=snakemake.params.tsne["seed"],  # noqa: F821
        figure=snakemake.output.figure,  # noqa: F821
        summary=snakemake.output.summary,  # noqa: F821
        threads=snakemake.params.threads or snakemake.threads,  # noqa: F821
    )
