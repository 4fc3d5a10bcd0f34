rule preprocess:
    """The photographs of a fundus dataset (EyeQ format, or a table of modality fundus) cropped to the field of view,
    padded square and resized."""
    input:
        fetched_dataset,
    output:
        images=directory(f"{RESULTS}/{{dataset}}/preprocessed/images"),
        summary=f"{RESULTS}/{{dataset}}/preprocessed/summary.json",
    log:
        f"{RESULTS}/logs/preprocess/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess/{{dataset}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: workflow.cores
    params:
        dataset=lambda wildcards: section("datasets", wildcards.dataset, drop=FETCH_KEYS + plan.TRUTH_KEYS),
        size=config["preprocess"]["size"],
        # Not an output: Snakemake deletes outputs before a rerun, and this is what a stopped run resumes from.
        work_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/preprocessed/work",
    script:
        "../scripts/preprocess.py"
