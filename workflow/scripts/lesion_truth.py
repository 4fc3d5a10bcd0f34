"""Adapter: the lesion_truth rule -> comcl.patches.truth.run_lesion_truth."""

from comcl.logs import job_log
from comcl.patches.truth import run_lesion_truth

with job_log(snakemake.log[0]):  # noqa: F821
    run_lesion_truth(
        index=snakemake.input.index,  # noqa: F821
        original=snakemake.input.original,  # noqa: F821
        detections=snakemake.input.detections,  # noqa: F821
        store=snakemake.input.store,  # noqa: F821
        boxes=snakemake.params.boxes,  # noqa: F821
        preprocessed=snakemake.params.preprocessed,  # noqa: F821
        params=snakemake.params.patches,  # noqa: F821
        image_size=snakemake.params.image_size,  # noqa: F821
        output=snakemake.output[0],  # noqa: F821
    )
