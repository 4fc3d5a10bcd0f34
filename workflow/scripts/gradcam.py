"""Adapter: the gradcam rule -> comcl.report.gradcam.run_gradcam."""

import torch

from comcl.logs import job_log
from comcl.report.gradcam import run_gradcam

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.params.threads or snakemake.threads)
    run_gradcam(
        index=snakemake.input.index,
        models=snakemake.params.models,
        input_size=snakemake.params.input_size,
        count=snakemake.params.gradcam["images"],
        seed=snakemake.params.gradcam["seed"],
        figure=snakemake.output.figure,
    )
