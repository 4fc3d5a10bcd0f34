rule index:
    """A dataset's labels, quality and level per image, read from its public format; the validation split
    carved patient-wise from the train split, before any later stage reads the data."""
    input:
        fetched_dataset,
        images=lambda wildcards: (
            rules.preprocess.output.images.format(**wildcards) if plan.preprocessed(config, wildcards.dataset) else []
        ),
    output:
        table=index_table("original"),
        summary=f"{RESULTS}/{{dataset}}/original/summary.json",
    log:
        f"{RESULTS}/logs/index/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/index/{{dataset}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: workflow.cores
    params:
        dataset=lambda wildcards: plan.indexed_dataset(config, wildcards.dataset),
        check_images=config["index"]["check_images"],
        val_share=config["index"]["val_share"],
        seed=config["index"]["seed"],
    script:
        "../scripts/index.py"
