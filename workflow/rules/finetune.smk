rule finetune:
    """A classifier fine-tuned from a pretrained encoder (or a supervised baseline), tested on the test split."""
    input:
        index=f"{RESULTS}/{{dataset}}/{{version}}/index.parquet",
        encoder=lambda wildcards: (
            rules.pretrain.output.encoder.format(variant=wildcards.method, **wildcards) if wildcards.method in VARIANTS else []
        ),
    output:
        metrics=f"{RESULTS}/{{dataset}}/{{version}}/finetune/{{method}}/seed{{seed}}/metrics.json",
        predictions=f"{RESULTS}/{{dataset}}/{{version}}/finetune/{{method}}/seed{{seed}}/predictions.parquet",
        training_log=f"{RESULTS}/{{dataset}}/{{version}}/finetune/{{method}}/seed{{seed}}/training_log.csv",
        model=f"{RESULTS}/{{dataset}}/{{version}}/finetune/{{method}}/seed{{seed}}/model.pt",
    params:
        finetune=lambda wildcards: {
            **section("finetune", drop=("baselines", "seeds")),
            "arch": finetune_setup(wildcards)["arch"],
            "seed": int(wildcards.seed),
        },
        init=lambda wildcards: finetune_setup(wildcards)["init"],
        work_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/{wildcards.version}/finetune/{wildcards.method}/seed{wildcards.seed}/work",
    log:
        f"{RESULTS}/logs/finetune/{{dataset}}_{{version}}_{{method}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/{{dataset}}_{{version}}_{{method}}_seed{{seed}}.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    conda:
        "../../envs/comcl.yaml"
    script:
        "../scripts/finetune.py"
