"""Adapter: the pretrain rule -> comcl.pretrain.train.pretrain.

Guarded by ``__main__``: on a job with several GPUs, pretraining spawns one process per GPU, and
each imports this script again, as ``__mp_main__``, where it must not start another run.
"""

from comcl.logs import job_log
from comcl.pretrain.train import pretrain

if __name__ == "__main__":
    with job_log(snakemake.log[0]):
        pretrain(
            variant=snakemake.params.variant,
            params=snakemake.params.pretrain,
            store=snakemake.input.store or None,
            index=snakemake.input.index,
            work_dir=snakemake.params.work_dir,
            encoder=snakemake.output.encoder,
            training_log=snakemake.output.training_log,
            curves=snakemake.output.curves,
            summary=snakemake.output.summary,
            threads=snakemake.params.threads or snakemake.threads,
        )
