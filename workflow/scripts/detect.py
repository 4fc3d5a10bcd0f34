"""Adapter: the detect rule -> comcl.detector.detect.run_detect."""

from comcl.detector.detect import run_detect
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    run_detect(
        index=snakemake.input.index,
        checkpoint=snakemake.input.checkpoint,
        model_file=snakemake.input.model,
        annotations=snakemake.input.annotations,
        params=snakemake.params.detect,
        detections=snakemake.output[0],
        threads=snakemake.params.threads or snakemake.threads,
    )
