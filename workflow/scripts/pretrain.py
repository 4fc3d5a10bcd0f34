"""Adapter: the pretrain rule -> comcl.pretrain.train.pretrain.

Guarded by ``__main__``: on a job with several GPUs, pretraining spawns one process per GPU, and
each imports this script again, as ``__mp_main__``, where it must not start another run.
"""

from comcl.logs import job_log
from comcl.pretrain.train import pretrain

if __name__ == "__main__":
    with job_log(snakemake.log[0]):  # noqa: F821
        pretrain(
            variant=snakemake.params.variant,  # noqa: F821
            params=snakemake.params.pretrain,  # noqa: F821
            store=snakemake.input.store or None,  # noqa: F821
            index=snakemake.input.index,  # noqa: F821
            work_dir=snakemake.params.work_dir,  # noqa: F821
            encoder=snakemake.output.encoder,  # noqa: F821
            training_log=snakemake.output.training_log,  # noqa: F821
            curves=snakemake.output.curves,  # noqa: F821
            summary=snakemake.output.summary,  # noqa: F821
            threads=snakemake.params.threads or snakemake.threads,  # noqa: F821
        )
