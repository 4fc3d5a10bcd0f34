rule index:
    """A dataset's labels, quality and level per image, read from its public format."""
    input:
        root=dataset_root,
    output:
        table=f"{RESULTS}/{{dataset}}/original/index.parquet",
        summary=f"{RESULTS}/{{dataset}}/original/summary.json",
    params:
        dataset=lambda wildcards: section("datasets", wildcards.dataset),
        check_images=config["index"]["check_images"],
    log:
        f"{RESULTS}/logs/index/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/index/{{dataset}}.tsv"
    threads: workflow.cores
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/index.py"
