rule synthesize:
    """An embedded synthetic dataset in the public on-disk format of the real one."""
    output:
        root=directory("results/synthetic/{name}"),
        contact_sheet=report(
            "results/figures/contact_sheet_{name}.png",
            caption="../report/contact_sheet.rst",
            category="Data",
            subcategory="Synthetic datasets",
        ),
    params:
        spec=lambda wildcards: config["synthetic"][wildcards.name],
        seed=config["synthetic"]["seed"],
    log:
        "results/logs/synthesize/{name}.log",
    benchmark:
        "results/benchmarks/synthesize/{name}.tsv"
    threads: workflow.cores
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/synthesize.py"
