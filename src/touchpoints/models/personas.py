"""Personas: customers clustered on their behaviour, each cluster described in words.

The input is one row per customer and numeric behavioural columns (orders, revenue,
sessions, channel shares, email engagement…). Columns that are non-negative and
heavy-tailed (skewness above 1) are log1p-transformed first, so a few big spenders do not
make a cluster of their own; then every column is standardised (mean 0, sd 1), and
k-means (scikit-learn, k-means++ with 10 starts, seeded) runs for each k in `k_range`.
The number of clusters is the k with the highest mean silhouette (Rousseeuw 1987),
computed on a seeded sample of at most `silhouette_sample` customers.

A cluster is described by its *distinctive features*: the columns whose cluster mean,
on the standardised scale, is furthest from the overall mean (|z| >= 0.5, at most three),
each as "high …" or "low …"; a cluster with none is "typical customers".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from touchpoints.errors import InvalidInput

DISTINCT_Z = 0.5
MAX_TERMS = 3


@dataclass(frozen=True)
class Persona:
    cluster: int
    size: int
    share: float
    name: str
    #: Standardised distance of the cluster mean from everyone's, per feature.
    z: dict[str, float]
    #: The cluster's mean of each feature on its original scale.
    means: dict[str, float]


@dataclass
class PersonaModel:
    k: int
    silhouettes: dict[int, float]
    #: The cluster of each customer, indexed like the input.
    clusters: pd.Series
    personas: list[Persona] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"cluster": p.cluster, "name": p.name, "size": p.size, "share": p.share}
             for p in self.personas]
        )  # fmt: skip


def _prepared(features: pd.DataFrame) -> pd.DataFrame:
    numeric = features.select_dtypes(include="number").astype("float64")
    if numeric.shape[1] == 0:
        raise InvalidInput("personas need at least one numeric feature column", field="features")
    if numeric.isna().any().any():
        bad = numeric.columns[numeric.isna().any()].tolist()
        raise InvalidInput(f"feature columns with missing values: {bad}", field="features")
    numeric = numeric.loc[:, numeric.std(ddof=0) > 0]  # a constant says nothing
    if numeric.shape[1] == 0:
        raise InvalidInput("every feature column is constant", field="features")
    skewed = [c for c in numeric if numeric[c].min() >= 0 and numeric[c].skew() > 1]
    numeric[skewed] = np.log1p(numeric[skewed])
    return (numeric - numeric.mean()) / numeric.std(ddof=0)


def describe(z: pd.Series, labels: dict[str, str] | None = None) -> str:
    """Words for a cluster from its standardised feature means."""
    labels = labels or {}
    strong = z[z.abs() >= DISTINCT_Z].sort_values(key=np.abs, ascending=False)[:MAX_TERMS]
    if strong.empty:
        return "typical customers"
    words = [
        f"{'high' if value > 0 else 'low'} {labels.get(name, name.replace('_', ' '))}"
        for name, value in strong.items()
    ]
    return ", ".join(words)


def fit_personas(
    features: pd.DataFrame,
    k_range: Iterable[int] = range(2, 9),
    *,
    seed: int = 0,
    silhouette_sample: int = 10_000,
    labels: dict[str, str] | None = None,
) -> PersonaModel:
    """Cluster customers (rows of `features`) into personas; see the module docstring."""
    ks = sorted(set(k_range))
    if not ks or ks[0] < 2:
        raise InvalidInput("the numbers of clusters to try start at 2", field="k_range")
    scaled = _prepared(features)
    if len(scaled) <= ks[-1]:
        raise InvalidInput(
            f"{len(scaled)} customers are too few for up to {ks[-1]} clusters", field="features"
        )
    values = scaled.to_numpy()
    fits, silhouettes = {}, {}
    for k in ks:
        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(values)
        fits[k] = model
        sample = min(silhouette_sample, len(values))
        silhouettes[k] = float(
            silhouette_score(values, model.labels_, sample_size=sample, random_state=seed)
        )
    best = max(ks, key=lambda k: (silhouettes[k], -k))
    clusters = pd.Series(fits[best].labels_, index=features.index, name="cluster")
    personas = []
    numeric = features[scaled.columns]
    for cluster in sorted(clusters.unique()):
        inside = (clusters == cluster).to_numpy()
        z = scaled[inside].mean()
        personas.append(
            Persona(
                cluster=int(cluster),
                size=int(inside.sum()),
                share=float(inside.mean()),
                name=describe(z, labels),
                z={k: float(v) for k, v in z.items()},
                means={k: float(v) for k, v in numeric[inside].mean().items()},
            )
        )
    personas.sort(key=lambda p: -p.size)
    return PersonaModel(best, silhouettes, clusters, personas)


def breakdown(clusters: pd.Series, traits: pd.Series) -> pd.DataFrame:
    """The share of each trait value (gender, country, tier…) within each persona; a
    missing trait is `(unknown)`."""
    values = traits.reindex(clusters.index).fillna("(unknown)").astype(str)
    return pd.crosstab(clusters, values, normalize="index")
