"""Fine-tuning of pretrained encoders and supervised baselines, and their evaluation."""
