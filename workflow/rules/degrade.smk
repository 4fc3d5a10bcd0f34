rule degrade:
    """A dataset at a higher low-quality proportion: degraded images and their index."""
    input:
        table=index_table("original"),
    output:
        table=index_table("{proportion}"),
        summary=f"{RESULTS}/{{dataset}}/{{proportion}}/summary.json",
        images=directory(f"{RESULTS}/{{dataset}}/{{proportion}}/images"),
    log:
        f"{RESULTS}/logs/degrade/{{dataset}}_{{proportion}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/degrade/{{dataset}}_{{proportion}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: workflow.cores
    params:
        target=lambda wildcards: PROPORTIONS[wildcards.proportion],
        degrade_test=config["degrade"]["degrade_test"],
        seed=config["degrade"]["seed"],
    script:
        "../scripts/degrade.py"


rule degradation_gallery:
    """The same images before and after each degradation type."""
    input:
        table=index_table("original"),
    output:
        report(
            f"{RESULTS}/figures/degradations_{{dataset}}.png",
            caption="../report/degradations.rst",
            category="Data",
            subcategory="Degradations",
        ),
    log:
        f"{RESULTS}/logs/degradation_gallery/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/degradation_gallery/{{dataset}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        seed=config["degrade"]["seed"],
    script:
        "../scripts/degradation_gallery.py"
