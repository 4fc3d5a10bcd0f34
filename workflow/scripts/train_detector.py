"""Adapter: the train_detector rule -> comcl.detector.train.train_detector."""

from comcl.detector.train import train_detector
from comcl.logs import job_log

with job_log(snakemake.log[0]):
    train_detector(
        model_file=snakemake.input.model,
        annotations={"train": snakemake.input.train, "test": snakemake.input.test},
        params=snakemake.params.training,
        work_dir=snakemake.params.work_dir,
        checkpoint=snakemake.output.checkpoint,
        metrics=snakemake.output.metrics,
        training_log=snakemake.output.training_log,
        figure=snakemake.output.figure,
        threads=snakemake.params.threads or snakemake.threads,
    )
