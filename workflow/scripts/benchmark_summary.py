"""Adapter: the benchmark_summary rule -> comcl.report.benchmarks.run_benchmark_summary."""

from comcl.logs import job_log
from comcl.report.benchmarks import run_benchmark_summary

with job_log(snakemake.log[0]):
    run_benchmark_summary(snakemake.params.folder, snakemake.output.table, snakemake.output.figure)
