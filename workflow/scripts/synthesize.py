"""Adapter: the synthesize rule -> comcl.synth.generate.synthesize."""

from comcl.logs import job_log
from comcl.synth.generate import synthesize

with job_log(snakemake.log[0]):  # noqa: F821
    synthesize(
        name=snakemake.wildcards.name,  # noqa: F821
        root=snakemake.output.root,  # noqa: F821
        contact_sheet=snakemake.output.contact_sheet,  # noqa: F821
        params=snakemake.params.spec,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        workers=snakemake.threads,  # noqa: F821
    )
