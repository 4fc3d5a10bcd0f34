"""Adapter: the resolved_config rule -> comcl.io.write_yaml."""

from comcl.io import write_yaml
from comcl.logs import job_log

HEADER = """The configuration that made this folder: the schema's defaults (the paper's values) with the
configuration files merged over them, keys sorted. The workflow rewrites it whenever it changes: edit
the configuration files, not this one. Every key is explained in workflow/schemas/config.schema.yaml."""

with job_log(snakemake.log[0]):
    write_yaml(snakemake.output[0], snakemake.params.config, header=HEADER)
