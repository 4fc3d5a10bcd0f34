"""Adapter: the patch_figures rule -> comcl.patches.figures."""

import pandas as pd

from comcl.io import read_table
from comcl.logs import job_log
from comcl.patches.figures import draw_mosaic, draw_windows
from comcl.patches.store import read_store_metadata

with job_log(snakemake.log[0]):  # noqa: F821
    index, meta = read_table(snakemake.input.index)  # noqa: F821
    detections, _ = read_table(snakemake.input.detections)  # noqa: F821
    windows = pd.read_parquet(snakemake.input.store, columns=["image_id", "x0", "y0", "x1", "y1"])  # noqa: F821
    image_size = read_store_metadata(snakemake.input.store)["image_size"]  # noqa: F821
    params = snakemake.params  # noqa: F821
    draw_windows(index, meta, detections, windows, image_size, params.conf, snakemake.output.windows, params.seed)  # noqa: F821
    draw_mosaic(snakemake.input.store, snakemake.output.mosaic, snakemake.params.seed)  # noqa: F821
