"""The four levels of CoMCL, the pair (lesion?, quality) of an image: L a lesion image of high quality, L~ of low
quality, H a healthy image of high quality, H~ of low quality. The index gives every image its level; the detector
looks for lesions on the L and L~ images only; the patch store and pretraining group patches by level."""

LEVELS = ("L", "L~", "H", "H~")
LESION_LEVELS = ("L", "L~")
LEVEL_NAMES = {
    "L": "L: lesion, high quality",
    "L~": "L~: lesion, low quality",
    "H": "H: healthy, high quality",
    "H~": "H~: healthy, low quality",
}
