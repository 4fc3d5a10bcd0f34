"""Adapter: the finetune rule -> comcl.finetune.train.finetune.

Guarded by ``__main__``: on a job with several GPUs, fine-tuning spawns one process per GPU, and
each imports this script again, as ``__mp_main__``, where it must not start another run.
"""

from comcl.finetune.train import finetune
from comcl.logs import job_log

if __name__ == "__main__":
    with job_log(snakemake.log[0]):  # noqa: F821
        finetune(
            index=snakemake.input.index,  # noqa: F821
            params=snakemake.params.finetune,  # noqa: F821
            init=snakemake.params.init,  # noqa: F821
            encoder=snakemake.input.encoder or None,  # noqa: F821
            work_dir=snakemake.params.work_dir,  # noqa: F821
            metrics=snakemake.output.metrics,  # noqa: F821
            predictions=snakemake.output.predictions,  # noqa: F821
            training_log=snakemake.output.training_log,  # noqa: F821
            model_file=snakemake.output.model,  # noqa: F821
            threads=snakemake.params.threads or snakemake.threads,  # noqa: F821
        )
