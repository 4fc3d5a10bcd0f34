rule index:
    """A dataset's labels, quality and level per image, read from its public format."""
    input:
        root=dataset_root,
    output:
        table="results/{dataset}/original/index.parquet",
        summary="results/{dataset}/original/summary.json",
    params:
        dataset=lambda wildcards: config["datasets"][wildcards.dataset],
        check_images=config["index"]["check_images"],
    log:
        "results/logs/index/{dataset}.log",
    benchmark:
        "results/benchmarks/index/{dataset}.tsv"
    threads: workflow.cores
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/index.py"
