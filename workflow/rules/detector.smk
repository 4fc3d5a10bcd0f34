rule lesion_annotations:
    """The detector's lesion boxes (IDRiD masks, NIH's box list or a COCO export) as COCO files, train and test; never
    on an image of the dataset's val or test split (its original index says which)."""
    input:
        fetched_lesions,
        index=index_table("original"),
    output:
        train=f"{RESULTS}/{{dataset}}/detector/annotations/train.json",
        test=f"{RESULTS}/{{dataset}}/detector/annotations/test.json",
        summary=f"{RESULTS}/{{dataset}}/detector/annotations/summary.json",
    log:
        f"{RESULTS}/logs/lesion_annotations/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/lesion_annotations/{{dataset}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    params:
        source=lambda wildcards: {k: v for k, v in LESION_SOURCES[wildcards.dataset].items() if k not in FETCH_KEYS},
        min_area=config["detector"]["min_area"],
        test_share=config["detector"]["test_share"],
        seed=config["detector"]["seed"],
    script:
        "../scripts/lesion_annotations.py"


rule train_detector:
    """Faster R-CNN (MMDetection) on the lesion boxes; COCO mAP on their test split; a clean checkpoint."""
    input:
        train=rules.lesion_annotations.output.train,
        test=rules.lesion_annotations.output.test,
        model=DETECTOR_MODEL,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/detector/model.pth",
        metrics=f"{RESULTS}/{{dataset}}/detector/metrics.json",
        training_log=f"{RESULTS}/{{dataset}}/detector/training_log.csv",
        figure=report(
            f"{RESULTS}/figures/detector_training_{{dataset}}.png",
            caption="../report/detector.rst",
            category="Detector",
        ),
    log:
        f"{RESULTS}/logs/train_detector/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_detector/{{dataset}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        threads=config["threads"],
        training={
            key: config["detector"][key]
            for key in [
                "scale",
                "iterations",
                "batch_size",
                "lr",
                "warmup_iterations",
                "checkpoint_interval",
                "workers",
                "device",
                "pretrained",
                "seed",
            ]
        },
        work_dir=lambda wildcards: f"{RESULTS}/{wildcards.dataset}/detector/work",
        model_digest=DETECTOR_MODEL_DIGEST,
    script:
        "../scripts/train_detector.py"


rule detect:
    """The detector's boxes on every lesion image (levels L and L~) of a dataset version."""
    input:
        index=index_table("{version}"),
        checkpoint=rules.train_detector.output.checkpoint,
        annotations=rules.lesion_annotations.output.train,
        model=DETECTOR_MODEL,
    output:
        f"{RESULTS}/{{dataset}}/{{version}}/detections.parquet",
    log:
        f"{RESULTS}/logs/detect/{{dataset}}_{{version}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/detect/{{dataset}}_{{version}}.tsv"
    conda:
        "../../envs/comcl.yaml"
    threads: TORCH_THREADS
    resources:
        gpu=1,
    params:
        threads=config["threads"],
        detect=section("detect"),
        model_digest=DETECTOR_MODEL_DIGEST,
    script:
        "../scripts/detect.py"
