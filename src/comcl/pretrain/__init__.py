"""Multi-level contrastive pretraining (CoMCL) with self-paced hard-negative mining, and its baselines as configurations."""
