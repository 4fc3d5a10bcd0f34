"""Adapter: the train_detector rule -> comcl.detector.train.train_detector."""

from comcl.detector.train import train_detector
from comcl.logs import job_log

with job_log(snakemake.log[0]):  # noqa: F821
    train_detector(
        model_file=snakemake.input.model,  # noqa: F821
        annotations={"train": snakemake.input.train, "test": snakemake.input.test},  # noqa: F821
        params=snakemake.params.training,  # noqa: F821
        work_dir=snakemake.params.work_dir,  # noqa: F821
        checkpoint=snakemake.output.checkpoint,  # noqa: F821
        metrics=snakemake.output.metrics,  # noqa: F821
        training_log=snakemake.output.training_log,  # noqa: F821
        figure=snakemake.output.figure,  # noqa: F821
        threads=snakemake.params.threads or snakemake.threads,  # noqa: F821
    )
