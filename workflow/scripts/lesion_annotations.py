"""Adapter: the lesion_annotations rule -> comcl.detector.annotations.write_lesion_annotations."""

from comcl.detector.annotations import write_lesion_annotations
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    write_lesion_annotations(
        source=snakemake.params.source,
        min_area=snakemake.params.min_area,
        test_share=snakemake.params.test_share,
        seed=snakemake.params.seed,
        index=snakemake.input.index,
        train=snakemake.output.train,
        test=snakemake.output.test,
        summary=snakemake.output.summary,
    )
