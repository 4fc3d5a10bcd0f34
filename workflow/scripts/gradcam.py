"""Adapter: the gradcam rule -> comcl.report.gradcam.run_gradcam."""

import torch

from comcl.logs import job_log
from comcl.report.gradcam import run_gradcam

with job_log(snakemake.log[0]):  # noqa: F821
    torch.set_num_threads(snakemake.params.threads or snakemake.threads)  # noqa: F821
    run_gradcam(
        index=snakemake.input.index,  # noqa: F821
        models=snakemake.params.models,  # noqa: F821
        input_size=snakemake.params.input_size,  # noqa: F821
        count=snakemake.params.gradcam["images"],  # noqa: F821
        seed=snakemake.params.gradcam["seed"],  # noqa: F821
        figure=snakemake.output.figure,  # noqa: F821
    )
