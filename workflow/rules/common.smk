RESULTS = config["results"]
DATASETS = list(config["datasets"])
SYNTHETIC = config["synthetic"]["datasets"]


wildcard_constraints:
    dataset="|".join(DATASETS) or "^$",
    name="|".join(SYNTHETIC) or "^$",


def dataset_root(wildcards):
    return config["datasets"][wildcards.dataset]["root"]
