"""Image-quality degradations, shared by the synthetic generator and the degradation stage."""
