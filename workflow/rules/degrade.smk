rule degrade:
    """A dataset at a higher low-quality proportion: degraded images and their index."""
    input:
        table=f"{RESULTS}/{{dataset}}/original/index.parquet",
    output:
        table=f"{RESULTS}/{{dataset}}/{{proportion}}/index.parquet",
        summary=f"{RESULTS}/{{dataset}}/{{proportion}}/summary.json",
        images=directory(f"{RESULTS}/{{dataset}}/{{proportion}}/images"),
    params:
        target=lambda wildcards: PROPORTIONS[wildcards.proportion],
        degrade_test=config["degrade"]["degrade_test"],
        seed=config["degrade"]["seed"],
    log:
        f"{RESULTS}/logs/degrade/{{dataset}}_{{proportion}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/degrade/{{dataset}}_{{proportion}}.tsv"
    threads: workflow.cores
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/degrade.py"


rule degradation_gallery:
    """The same images before and after each degradation type."""
    input:
        table=f"{RESULTS}/{{dataset}}/original/index.parquet",
    output:
        report(
            f"{RESULTS}/figures/degradations_{{dataset}}.png",
            caption="../report/degradations.rst",
            category="Data",
            subcategory="Degradations",
        ),
    params:
        seed=config["degrade"]["seed"],
    log:
        f"{RESULTS}/logs/degradation_gallery/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/degradation_gallery/{{dataset}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/degradation_gallery.py"
