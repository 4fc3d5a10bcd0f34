RESULTS = config["results"]
DATASETS = list(config["datasets"])
SYNTHETIC = config["synthetic"]["datasets"]


PROPORTIONS = {f"lq{round(p * 100)}": p for p in config["degrade"]["proportions"]}


wildcard_constraints:
    proportion="|".join(PROPORTIONS) or "^$",
    dataset="|".join(DATASETS) or "^$",
    name="|".join(SYNTHETIC) or "^$",


def dataset_root(wildcards):
    return config["datasets"][wildcards.dataset]["root"]
