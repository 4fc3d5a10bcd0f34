rule resolved_config:
    """The configuration this results folder was made with (schema defaults and configuration files merged),
    rewritten whenever it changes."""
    output:
        report(f"{RESULTS}/config.yaml", caption="../report/config.rst", category="Configuration"),
    log:
        f"{RESULTS}/logs/resolved_config.log",
    benchmark:
        f"{RESULTS}/benchmarks/resolved_config/resolved_config.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        config=section(),
    script:
        "../scripts/resolved_config.py"


rule tables:
    """Tables 1-3 (CSV, Markdown, LaTeX, HTML) beside the paper's numbers, and per-class tables."""
    input:
        metrics=[run["metrics"] for dataset in DATASETS for run in finetune_jobs(dataset)],
        pretrainings=sorted({run["pretraining"] for dataset in DATASETS for run in finetune_jobs(dataset) if run["pretraining"]}),
        indexes=expand(f"{RESULTS}/{{dataset}}/original/summary.json", dataset=DATASETS),
        truths=plan.lesion_truth_outputs(config),
    output:
        tables=expand(f"{RESULTS}/tables/{{table}}.{{ext}}", table=TABLES, ext=["csv", "md", "tex"]),
        html=[report(f"{RESULTS}/tables/{table}.html", caption=f"../report/{table}.rst", category="Tables") for table in TABLES],
        per_class=expand(f"{RESULTS}/tables/per_class_{{dataset}}.csv", dataset=DATASETS),
    log:
        f"{RESULTS}/logs/tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/tables.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        runs=[run for dataset in DATASETS for run in finetune_jobs(dataset)],
        variants=VARIANTS,
        # What the notes say of the configuration; they name the resolved configuration file for the rest.
        context=table_context(config, VERSIONS, rules.resolved_config.output[0]),
    script:
        "../scripts/tables.py"


rule linear_table:
    """The linear evaluation of every dataset version with pretrained encoders, in one table beside Tables 1-3."""
    input:
        metrics=[f"{RESULTS}/{dataset}/{version}/linear/metrics.json" for dataset in DATASETS for version in LINEAR_VERSIONS],
    output:
        csv=f"{RESULTS}/tables/linear_eval.csv",
        markdown=report(f"{RESULTS}/tables/linear_eval.md", caption="../report/linear_eval.rst", category="Tables"),
    log:
        f"{RESULTS}/logs/linear_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/linear_table/linear_table.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        runs=[[dataset, version] for dataset in DATASETS for version in LINEAR_VERSIONS],
        labels={name: variant["name"] for name, variant in VARIANTS.items()},
    script:
        "../scripts/linear_table.py"


rule comparisons:
    """Paired differences of the reference method from every other, per dataset version, under fine-tuning and
    linear evaluation, with bootstrap intervals over the shared seeds and test images."""
    input:
        finetuned=[run["predictions"] for dataset in DATASETS for run in finetune_jobs(dataset)],
        linear=[
            f"{RESULTS}/{dataset}/{version}/linear/predictions.parquet" for dataset in DATASETS for version in LINEAR_VERSIONS
        ],
        indexes=[index_table(version).format(dataset=dataset) for dataset in DATASETS for version in VERSIONS],
    output:
        csv=f"{RESULTS}/tables/comparisons.csv",
        markdown=report(f"{RESULTS}/tables/comparisons.md", caption="../report/comparisons.rst", category="Tables"),
    log:
        f"{RESULTS}/logs/comparisons.log",
    benchmark:
        f"{RESULTS}/benchmarks/comparisons/comparisons.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        finetuned=[
            {key: run[key] for key in ("dataset", "version", "method", "seed", "predictions")}
            for dataset in DATASETS
            for run in finetune_jobs(dataset)
        ],
        linear=[
            {"dataset": dataset, "version": version, "predictions": f"{RESULTS}/{dataset}/{version}/linear/predictions.parquet"}
            for dataset in DATASETS
            for version in LINEAR_VERSIONS
        ],
        indexes=[
            {"dataset": dataset, "version": version, "index": index_table(version).format(dataset=dataset)}
            for dataset in DATASETS
            for version in VERSIONS
        ],
        labels={name: variant["name"] for name, variant in VARIANTS.items()},
        comparisons={**section("comparisons"), "threshold": config["finetune"]["threshold"], "init": config["pretrain"]["init"]},
    script:
        "../scripts/comparisons.py"


rule finetune_figures:
    """Training curves and test confusion matrices (or AUROC per finding) of every method on one dataset version."""
    input:
        metrics=lambda wildcards: [run["metrics"] for run in finetune_jobs(wildcards.dataset, wildcards.version)],
    output:
        curves=report(
            f"{RESULTS}/figures/finetune_{{dataset}}_{{version}}.png",
            caption="../report/finetune_curves.rst",
            category="Fine-tuning",
            subcategory="{dataset}",
        ),
        outcomes=report(
            f"{RESULTS}/figures/outcomes_{{dataset}}_{{version}}.png",
            caption="../report/finetune_outcomes.rst",
            category="Fine-tuning",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/finetune_figures/{{dataset}}_{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune_figures/{{dataset}}_{{version}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        runs=lambda wildcards: {
            method_label(method): [
                run["metrics"] for run in finetune_jobs(wildcards.dataset, wildcards.version) if run["method"] == method
            ]
            for method in dict.fromkeys(run["method"] for run in finetune_jobs(wildcards.dataset, wildcards.version))
        },
    script:
        "../scripts/finetune_figures.py"


rule tsne:
    """t-SNE of pretrained encoders' patch embeddings coloured by level (paper Fig. 1)."""
    input:
        store=rules.patches.output.store,
        encoders=lambda wildcards: [
            rules.pretrain.output.encoder.format(variant=variant, **wildcards) for variant in tsne_variants(wildcards)
        ],
    output:
        figure=report(
            f"{RESULTS}/figures/tsne_{{dataset}}_{{version}}.png",
            caption="../report/tsne.rst",
            category="Embeddings",
            subcategory="{dataset}",
        ),
        summary=f"{RESULTS}/{{dataset}}/{{version}}/tsne.json",
    log:
        f"{RESULTS}/logs/tsne/{{dataset}}_{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tsne/{{dataset}}_{{version}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        threads=config["threads"],
        encoders=lambda wildcards: {
            method_label(variant): rules.pretrain.output.encoder.format(variant=variant, **wildcards)
            for variant in tsne_variants(wildcards)
        },
        tsne=section("figures", "tsne", drop=("variants",)),
        arch=config["pretrain"]["arch"],
        view_size=config["pretrain"]["view_size"],
    script:
        "../scripts/tsne.py"


rule gradcam:
    """Grad-CAM of the fine-tuned classifiers on diseased test images (paper Fig. 3)."""
    input:
        index=index_table("{version}"),
        models=lambda wildcards: list(gradcam_models(wildcards).values()),
    output:
        figure=report(
            f"{RESULTS}/figures/gradcam_{{dataset}}_{{version}}.png",
            caption="../report/gradcam.rst",
            category="Class activation maps",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/gradcam/{{dataset}}_{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gradcam/{{dataset}}_{{version}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        threads=config["threads"],
        models=gradcam_models,
        gradcam=section("figures", "gradcam", drop=("methods",)),
        input_size=config["finetune"]["input_size"],
    script:
        "../scripts/gradcam.py"


rule benchmark_summary:
    """Wall time and peak memory per stage, from every job's benchmark file (run last)."""
    input:
        plan.reported_outputs(config),
    output:
        table=f"{RESULTS}/benchmarks/summary.csv",
        figure=report(f"{RESULTS}/figures/benchmarks.png", caption="../report/benchmarks.rst", category="Benchmarks"),
    log:
        f"{RESULTS}/logs/benchmark_summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/benchmark_summary/benchmark_summary.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        folder=lambda wildcards, output: Path(output.table).parent,
    script:
        "../scripts/benchmark_summary.py"
