rule index:
    """A dataset's labels, quality and level per image, read from its public format; the validation split
    carved patient-wise from the train split, before any later stage reads the data."""
    input:
        fetched_dataset,
        images=lambda wildcards: rules.preprocess.output.images.format(**wildcards) if preprocessed(wildcards.dataset) else [],
    output:
        table=f"{RESULTS}/{{dataset}}/original/index.parquet",
        summary=f"{RESULTS}/{{dataset}}/original/summary.json",
    params:
        dataset=indexed_dataset,
        check_images=config["index"]["check_images"],
        val_share=config["index"]["val_share"],
        seed=config["index"]["seed"],
    log:
        f"{RESULTS}/logs/index/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/index/{{dataset}}.tsv"
    threads: workflow.cores
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/index.py"
