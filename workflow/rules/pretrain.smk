rule pretrain:
    """Contrastive pretraining of one variant (config/pretrain/) on one dataset version."""
    input:
        # Whole-image variants (Basic CL) read the index only.
        store=lambda wildcards: (
            rules.patches.output.store.format(**wildcards) if VARIANTS[wildcards.variant]["source"] == "patches" else []
        ),
        index=index_table("{version}"),
    output:
        encoder=f"{RESULTS}/{{dataset}}/{{version}}/pretrain/{{variant}}/encoder.pt",
        training_log=f"{RESULTS}/{{dataset}}/{{version}}/pretrain/{{variant}}/training_log.csv",
        summary=f"{RESULTS}/{{dataset}}/{{version}}/pretrain/{{variant}}/summary.json",
        curves=report(
            f"{RESULTS}/figures/pretrain_{{dataset}}_{{version}}_{{variant}}.png",
            caption="../report/pretrain.rst",
            category="Pretraining",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/pretrain/{{dataset}}_{{version}}_{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain/{{dataset}}_{{version}}_{{variant}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        threads=config["threads"],
        variant=lambda wildcards: VARIANTS[wildcards.variant],
        # Whole images are seen at the scale fine-tuning sees them, as the patches are cut.
        pretrain={**section("pretrain", drop=("runs",)), "input_size": config["finetune"]["input_size"]},
        work_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/{wildcards.version}/pretrain/{wildcards.variant}/work",
    script:
        "../scripts/pretrain.py"
