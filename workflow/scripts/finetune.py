"""Adapter: the finetune rule -> comcl.finetune.train.finetune.

Guarded by ``__main__``: on a job with several GPUs, fine-tuning spawns one process per GPU, and
each imports this script again, as ``__mp_main__``, where it must not start another run.
"""

from comcl.finetune.train import finetune
from comcl.logs import job_log

if __name__ == "__main__":
    with job_log(snakemake.log[0]):
        finetune(
            index=snakemake.input.index,
            params=snakemake.params.finetune,
            init=snakemake.params.init,
            encoder=snakemake.input.encoder or None,
            work_dir=snakemake.params.work_dir,
            metrics=snakemake.output.metrics,
            predictions=snakemake.output.predictions,
            training_log=snakemake.output.training_log,
            model_file=snakemake.output.model,
            threads=snakemake.params.threads or snakemake.threads,
        )
