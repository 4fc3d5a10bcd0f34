"""What the workflow reports: Tables 1-3 beside the paper's numbers, embedding t-SNE and Grad-CAM figures."""
