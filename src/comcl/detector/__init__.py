"""The lesion detector: lesion boxes as COCO files, MMDetection training, inference."""
