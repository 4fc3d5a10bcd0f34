"""Adapter: the lesion_truth rule -> comcl.patches.truth.run_lesion_truth."""

from comcl.logs import job_log
from comcl.patches.truth import run_lesion_truth

with job_log(snakemake.log[0]):
    run_lesion_truth(
        index=snakemake.input.index,
        original=snakemake.input.original,
        detections=snakemake.input.detections,
        store=snakemake.input.store,
        boxes=snakemake.params.boxes,
        preprocessed=snakemake.params.preprocessed,
        params=snakemake.params.patches,
        input_size=snakemake.params.input_size,
        output=snakemake.output[0],
    )
