"""Readers for the four datasets, from a data directory.

The data directory comes from ``--data-dir`` or ``MODELSERVE_DATA_DIR`` and defaults
to ``../shared/datasets`` beside the project. When a file is missing and the machine is
online, the public files that have a canonical URL are downloaded into the data
directory; nothing in the tests or CI relies on that.
"""

from __future__ import annotations

import gzip
import os
import struct
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.integrity import sha256_file
from service.manifest import DatasetFile

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "datasets"

_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_UCI_WINE = "https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/"
_ICBHI = "derived from the ICBHI 2017 Respiratory Sound Database"
SOURCES = {
    **{f"mnist/{f}": _MNIST_URL + f for f in (
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
    "wine-quality/winequality-red.csv": _UCI_WINE + "winequality-red.csv",
    "california-housing/cal_housing.data": "StatLib (Pace & Barry, 1997), cal_housing.tgz",
    "auscultation/auscultation_features.xlsx": _ICBHI,
    "auscultation/patients_diagnosis.xlsx": _ICBHI,
}


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).resolve()
    env = os.environ.get("MODELSERVE_DATA_DIR")
    if env:
        return Path(env).resolve()
    return DEFAULT_DATA_DIR.resolve()


@dataclass
class Split:
    """A trainer's held-out split: the rows it trains on and the rows it is scored on.
    Trainers expose ``split(recipe, data)`` so the same held-out set can be replayed
    through a running service."""

    x_train: Any
    y_train: np.ndarray
    x_test: Any
    y_test: np.ndarray
    names: list[str] | None = None


@dataclass
class DataDir:
    root: Path

    def file(self, relative: str) -> Path:
        path = self.root / relative
        if not path.is_file():
            self._download(relative, path)
        return path

    def record(self, *relatives: str) -> list[DatasetFile]:
        """What went into a model, for its manifest."""
        return [
            DatasetFile(path=r, sha256=sha256_file(self.root / r), source=SOURCES.get(r, "local"))
            for r in relatives
        ]

    def _download(self, relative: str, path: Path) -> None:
        url = SOURCES.get(relative, "")
        if not url.startswith("https://"):
            raise FileNotFoundError(
                f"{path} is missing and has no download source; point --data-dir "
                "(or MODELSERVE_DATA_DIR) at a folder holding the datasets"
            )
        print(f"{path} is missing; downloading {url}", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        try:
            urllib.request.urlretrieve(url, tmp)
        except OSError as exc:
            raise FileNotFoundError(
                f"{path} is missing and {url} could not be fetched: {exc}") from exc
        tmp.rename(path)


# --- MNIST -----------------------------------------------------------------------

MNIST_FILES = {
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzip): magic 0x00 0x00 <dtype 0x08=uint8> <ndim>."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = int(np.prod(dims))
    if body.size != expected:
        raise ValueError(f"{path}: header promises {expected} values, file holds {body.size}")
    return body.reshape(dims)


def load_mnist(data: DataDir, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = (read_idx(data.file(p)) for p in MNIST_FILES[split])
    if len(images) != len(labels):
        raise ValueError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


# --- Wine quality ----------------------------------------------------------------

WINE_FILE = "wine-quality/winequality-red.csv"


def load_wine(data: DataDir) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (n, 11) float and the raw integer quality (n,)."""
    import pandas as pd

    df = pd.read_csv(data.file(WINE_FILE), sep=";")
    features = [c for c in df.columns if c != "quality"]
    return df[features].to_numpy(np.float64), df["quality"].to_numpy(np.int64), features


# --- California housing ----------------------------------------------------------

HOUSING_FILE = "california-housing/cal_housing.data"
HOUSING_FEATURES = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup",
                    "Latitude", "Longitude"]


def load_housing(data: DataDir) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The 8-feature form of scikit-learn's fetch_california_housing, from the raw file.

    Target: median house value in units of $100,000.
    """
    raw = np.loadtxt(data.file(HOUSING_FILE), delimiter=",", dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != 9:
        raise ValueError(f"{HOUSING_FILE}: expected 9 columns, got shape {raw.shape}")
    lon, lat, age, rooms, bedrooms, pop, households, income, value = raw.T
    x = np.column_stack([income, age, rooms / households, bedrooms / households, pop,
                         pop / households, lat, lon])
    return x, value / 100_000.0, list(HOUSING_FEATURES)


# --- Auscultation ----------------------------------------------------------------

AUSCULTATION_FILE = "auscultation/auscultation_features.xlsx"
AUSCULTATION_STATS = ["Var", "Range", "Coarse_Av", "Fine_Av", "Spectrum Av"]


def load_auscultation(data: DataDir):  # -> pandas.DataFrame
    import pandas as pd

    df = pd.read_excel(data.file(AUSCULTATION_FILE))
    missing = {"patient_ID", "state", "start", "end", "age", *AUSCULTATION_STATS} - set(df.columns)
    if missing:
        raise ValueError(f"{AUSCULTATION_FILE}: missing columns {sorted(missing)}")
    df["duration"] = df["end"] - df["start"]
    # 1 = male, 0 = female, NaN where unknown (imputed inside the model's pipeline).
    df["sex"] = df["sex"].map({"M": 1.0, "F": 0.0})
    return df
