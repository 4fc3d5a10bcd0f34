"""Adapter: the synthesize rule -> comcl.synth.generate.synthesize."""

from comcl.logs import job_log
from comcl.synth.generate import synthesize

with job_log(snakemake.log[0]):
    synthesize(
        name=snakemake.wildcards.name,
        root=snakemake.output.root,
        contact_sheet=snakemake.output.contact_sheet,
        params=snakemake.params.spec,
        seed=snakemake.params.seed,
        workers=snakemake.threads,
    )
