"""The patch store: 128x128 windows around detected lesions and inside the field of view of healthy images."""
