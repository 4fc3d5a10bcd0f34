"""Adapter: the fetch_dataset and fetch_lesions rules -> comcl.datasets.fetch.fetch_source."""

from comcl.datasets.fetch import fetch_source
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    fetch_source(
        name=snakemake.params.name,
        source=snakemake.params.source,
        summary=snakemake.output[0],
    )
