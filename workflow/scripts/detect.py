"""Adapter: the detect rule -> comcl.detector.detect.run_detect."""

from comcl.detector.detect import run_detect
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    run_detect(
        index=snakemake.input.index,  # noqa: F821
        checkpoint=snakemake.input.checkpoint,  # noqa: F821
        model_file=snakemake.input.model,  # noqa: F821
        annotations=snakemake.input.annotations,  # noqa: F821
        params=snakemake.params.detect,  # noqa: F821
        detections=snakemake.output[0],  # noqa: F821
        threads=snakemake.params.threads or snakemake.threads,  # noqa: F821
    )
