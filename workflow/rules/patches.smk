rule patches:
    """The patch store of a dataset version: lesion windows (Omega) and healthy windows (RandC), cut from the
    images resized as fine-tuning resizes them (finetune.input_size), the scale that fine-tuning sees."""
    input:
        index=index_table("{version}"),
        detections=rules.detect.output[0],
    output:
        store=f"{RESULTS}/{{dataset}}/{{version}}/patches.parquet",
        summary=f"{RESULTS}/{{dataset}}/{{version}}/patches.json",
    log:
        f"{RESULTS}/logs/patches/{{dataset}}_{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/patches/{{dataset}}_{{version}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: workflow.cores
    params:
        patches=section("patches"),
        input_size=config["finetune"]["input_size"],
    script:
        "../scripts/patches.py"


rule patch_figures:
    """Detections and patch windows on sample images, and a mosaic of patches, per level."""
    input:
        index=index_table("{version}"),
        detections=rules.detect.output[0],
        store=rules.patches.output.store,
        summary=rules.patches.output.summary,
    output:
        windows=report(
            f"{RESULTS}/figures/patch_windows_{{dataset}}_{{version}}.png",
            caption="../report/patch_windows.rst",
            category="Patches",
            subcategory="{dataset}",
        ),
        mosaic=report(
            f"{RESULTS}/figures/patch_mosaic_{{dataset}}_{{version}}.png",
            caption="../report/patch_mosaic.rst",
            category="Patches",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/patch_figures/{{dataset}}_{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/patch_figures/{{dataset}}_{{version}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        patches=section("patches"),
    script:
        "../scripts/patch_figures.py"


rule lesion_truth:
    """How much of the lesion levels is lesion, against the dataset's own lesion boxes (datasets.<name>.lesion_boxes):
    the detector's precision and recall on the graded images, what the rim guard dropped, the lesion patches' purity."""
    input:
        index=index_table("{version}"),
        original=index_table("original"),
        detections=rules.detect.output[0],
        store=rules.patches.output.store,
        fetched=fetched_dataset,
    output:
        report(
            f"{RESULTS}/{{dataset}}/{{version}}/lesion_truth.json",
            caption="../report/lesion_truth.rst",
            category="Patches",
            subcategory="{dataset}",
        ),
    log:
        f"{RESULTS}/logs/lesion_truth/{{dataset}}_{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lesion_truth/{{dataset}}_{{version}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        boxes=lambda wildcards: plan.lesion_boxes_file(config, wildcards.dataset),
        preprocessed=lambda wildcards: plan.preprocessed(config, wildcards.dataset),
        patches=section("patches"),
        input_size=config["finetune"]["input_size"],
    script:
        "../scripts/lesion_truth.py"
