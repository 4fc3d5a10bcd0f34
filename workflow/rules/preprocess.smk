rule preprocess:
    """The photographs of a fundus dataset (EyeQ format, or a table of modality fundus) cropped to the field of view,
    padded square and resized."""
    input:
        fetched_dataset,
    output:
        images=directory(f"{RESULTS}/{{dataset}}/preprocessed/images"),
        summary=f"{RESULTS}/{{dataset}}/preprocessed/summary.json",
    params:
        dataset=lambda wildcards: dataset_section(wildcards.dataset),
        size=config["preprocess"]["size"],
        # Not an output: Snakemake deletes outputs before a rerun, and this is what a stopped run resumes from.
        work_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/preprocessed/work",
    log:
        f"{RESULTS}/logs/preprocess/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess/{{dataset}}.tsv"
    threads: workflow.cores
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/preprocess.py"
