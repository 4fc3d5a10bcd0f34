"""CoMCL: clinical-oriented multi-level contrastive learning for low-quality medical images."""

__version__ = "0.1.0"
