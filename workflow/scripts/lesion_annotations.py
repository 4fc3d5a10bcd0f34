"""Adapter: the lesion_annotations rule -> comcl.detector.annotations.write_lesion_annotations."""

from comcl.detector.annotations import write_lesion_annotations
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    write_lesion_annotations(
        source=snakemake.params.source,  # noqa: F821
        min_area=snakemake.params.min_area,  # noqa: F821
        test_share=snakemake.params.test_share,  # noqa: F821
        seed=snakemake.params.seed,  # noqa: F821
        index=snakemake.input.index,  # noqa: F821
        train=snakemake.output.train,  # noqa: F821
        test=snakemake.output.test,  # noqa: F821
        summary=snakemake.output.summary,  # noqa: F821
    )
