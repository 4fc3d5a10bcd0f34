rule finetune:
    """A classifier fine-tuned from a pretrained encoder (or a supervised baseline), tested on the test split."""
    input:
        index=index_table("{version}"),
        encoder=lambda wildcards: (
            rules.pretrain.output.encoder.format(variant=wildcards.method, **wildcards) if wildcards.method in VARIANTS else []
        ),
    output:
        metrics=f"{RESULTS}/{{dataset}}/{{version}}/finetune/{{method}}/seed{{seed}}/metrics.json",
        predictions=f"{RESULTS}/{{dataset}}/{{version}}/finetune/{{method}}/seed{{seed}}/predictions.parquet",
        training_log=f"{RESULTS}/{{dataset}}/{{version}}/finetune/{{method}}/seed{{seed}}/training_log.csv",
        model=f"{RESULTS}/{{dataset}}/{{version}}/finetune/{{method}}/seed{{seed}}/model.pt",
    log:
        f"{RESULTS}/logs/finetune/{{dataset}}_{{version}}_{{method}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/{{dataset}}_{{version}}_{{method}}_seed{{seed}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        threads=config["threads"],
        finetune=lambda wildcards: {
            **section("finetune", drop=("baselines", "seeds")),
            "arch": plan.finetune_setup(config, wildcards.method)["arch"],
            "seed": int(wildcards.seed),
        },
        init=lambda wildcards: plan.finetune_setup(config, wildcards.method)["init"],
        work_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/{wildcards.version}/finetune/{wildcards.method}/seed{wildcards.seed}/work",
    script:
        "../scripts/finetune.py"


rule linear_eval:
    """Linear evaluation of every encoder pretrained on one dataset version, and of the weights they started from."""
    input:
        index=index_table("{version}"),
        encoders=lambda wildcards: [
            rules.pretrain.output.encoder.format(variant=variant, **wildcards)
            for variant in plan.pretrained_on(config, wildcards.version)
        ],
    output:
        metrics=f"{RESULTS}/{{dataset}}/{{version}}/linear/metrics.json",
        predictions=f"{RESULTS}/{{dataset}}/{{version}}/linear/predictions.parquet",
    log:
        f"{RESULTS}/logs/linear_eval/{{dataset}}_{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/linear_eval/{{dataset}}_{{version}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        threads=config["threads"],
        encoders=lambda wildcards: {
            variant: rules.pretrain.output.encoder.format(variant=variant, **wildcards)
            for variant in plan.pretrained_on(config, wildcards.version)
        },
        linear={
            **section("linear"),
            **{key: config["finetune"][key] for key in ("input_size", "seeds", "threshold", "device")},
            **{key: config["pretrain"][key] for key in ("arch", "init")},
        },
    script:
        "../scripts/linear_eval.py"
