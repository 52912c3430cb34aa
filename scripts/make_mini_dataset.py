"""Build src/cnnlab/data/mini/: the stratified Fashion-MNIST subset that ships inside cnnlab.

600 images a class from the training set (6,000) and 100 a class from the test set (1,000),
drawn with a fixed seed, kept in their original order, written as gzip IDX files with mtime 0,
so running this again on the same source files gives byte-identical output.

    python scripts/make_mini_dataset.py [--source /usr/share/datasets/fashion-mnist]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnlab.data.idx import read_idx_pair, write_idx

SEED = 20240601
PER_CLASS = {"train": 600, "t10k": 100}
OUT = Path(__file__).resolve().parents[1] / "src" / "cnnlab" / "data" / "mini"


def pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of per_class random images of each class, ascending."""
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
              for c in range(int(labels.max()) + 1)]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for split, per_class in PER_CLASS.items():
        images, labels = read_idx_pair(args.source / f"{split}-images-idx3-ubyte.gz",
                                       args.source / f"{split}-labels-idx1-ubyte.gz", 10)
        keep = pick(labels, per_class, rng)
        write_idx(args.out / f"{split}-images-idx3-ubyte.gz", images[keep])
        write_idx(args.out / f"{split}-labels-idx1-ubyte.gz", labels[keep])
        print(f"{split}: {len(keep)} images, {np.bincount(labels[keep]).tolist()} per class")


if __name__ == "__main__":
    main()
