rule fetch_dataset:
    """A dataset completed from its configured sources (label files, image archives) and checked: every labelled image present."""
    input:
        root=lambda wildcards: plan.written_by_workflow(config, config["datasets"][wildcards.dataset]["root"]),
    output:
        f"{RESULTS}/{{dataset}}/source.json",
    log:
        f"{RESULTS}/logs/fetch_dataset/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fetch_dataset/{{dataset}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        name=lambda wildcards: wildcards.dataset,
        source=lambda wildcards: section("datasets", wildcards.dataset, drop=plan.TRUTH_KEYS),
    script:
        "../scripts/fetch.py"


rule fetch_lesions:
    """A dataset detector's lesion source, checked: an IDRiD segmentation tree (extracted from its zip if need be) or
    COCO files."""
    input:
        root=lambda wildcards: plan.written_by_workflow(config, LESION_SOURCES[wildcards.dataset]["root"]),
    output:
        f"{RESULTS}/{{dataset}}/detector/source.json",
    log:
        f"{RESULTS}/logs/fetch_lesions/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fetch_lesions/{{dataset}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        name=lambda wildcards: f"{wildcards.dataset} lesions",
        source=lambda wildcards: LESION_SOURCES[wildcards.dataset],
    script:
        "../scripts/fetch.py"
