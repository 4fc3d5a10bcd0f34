rule preprocess:
    """Fundus images of an EyeQ-format dataset cropped to the field of view, padded square and resized."""
    input:
        # The folder, as for the index: the synthetic datasets are one directory output each.
        root=dataset_root,
    output:
        images=directory(f"{RESULTS}/{{dataset}}/preprocessed/images"),
        summary=f"{RESULTS}/{{dataset}}/preprocessed/summary.json",
    params:
        dataset=lambda wildcards: section("datasets", wildcards.dataset),
        size=config["preprocess"]["size"],
    log:
        f"{RESULTS}/logs/preprocess/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess/{{dataset}}.tsv"
    threads: workflow.cores
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/preprocess.py"
