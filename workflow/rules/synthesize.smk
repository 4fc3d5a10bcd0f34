rule synthesize:
    """An embedded synthetic dataset in the public on-disk format of the real one."""
    output:
        root=directory(f"{RESULTS}/synthetic/{{name}}"),
        contact_sheet=report(
            f"{RESULTS}/figures/contact_sheet_{{name}}.png",
            caption="../report/contact_sheet.rst",
            category="Data",
            subcategory="Synthetic datasets",
        ),
    log:
        f"{RESULTS}/logs/synthesize/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesize/{{name}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: workflow.cores
    params:
        spec=lambda wildcards: section("synthetic", wildcards.name),
        seed=config["synthetic"]["seed"],
    script:
        "../scripts/synthesize.py"
