"""Task clustering of calls and the train/validation split by cluster (step 3 of the loop).

Each sample's text is its user prompt plus the names of the actions it took
(:meth:`Sample.task_text`); TF-IDF (word uni- and bi-grams) + k-means from
scikit-learn group them into tasks.  Whole clusters go to validation until
it holds about the requested fraction, so near-duplicates (which land in one
cluster) never sit on both sides of the split.  The per-cluster summary names
each cluster by its top TF-IDF terms and most frequent tools.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from slm_agent.dataset.records import Sample


@dataclass
class Cluster:
    id: int
    size: int
    top_terms: list[str]
    top_tools: list[str]
    split: str = "train"
    sources: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"id": self.id, "size": self.size, "split": self.split, "top_terms": self.top_terms,
                "top_tools": self.top_tools, "sources": self.sources}


def cluster_samples(samples: Sequence[Sample], k: int = 0, seed: int = 0) -> tuple[list[int], list[Cluster]]:
    """(cluster id per sample, clusters); ``k`` 0 = about sqrt(n/2), at least 1."""
    n = len(samples)
    if n == 0:
        return [], []
    k = k or max(1, round(math.sqrt(n / 2)))
    k = max(1, min(k, n))
    texts = [s.task_text() for s in samples]
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, stop_words="english",
                              token_pattern=r"(?u)\b\w[\w.]+\b")
        x = vec.fit_transform(texts)
        terms = vec.get_feature_names_out()
    except ValueError:  # every text empty: one cluster
        return [0] * n, [Cluster(0, n, [], [])]
    labels = list(KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)) if k > 1 else [0] * n
    clusters = []
    for c in range(k):
        idx = [i for i, lab in enumerate(labels) if lab == c]
        if not idx:
            continue
        weights = x[idx].sum(axis=0).A1
        top = [str(terms[j]) for j in weights.argsort()[::-1][:5] if weights[j] > 0]
        tools = Counter(call["name"] for i in idx for call in samples[i].calls())
        sources = Counter(samples[i].source for i in idx)
        clusters.append(Cluster(c, len(idx), top, [t for t, _ in tools.most_common(3)], sources=dict(sources)))
    return [int(v) for v in labels], clusters


def split_by_cluster(labels: Sequence[int], clusters: list[Cluster], val_fraction: float,
                     seed: int = 0) -> set[int]:
    """Cluster ids that go to validation (whole clusters; marks ``Cluster.split``).

    Clusters are taken in a seeded random order, skipping any that would push
    validation past the target by more than half a cluster, until the target is
    reached; with two or more clusters at least one stays in train and (when
    ``val_fraction`` > 0) at least one goes to validation."""
    if val_fraction <= 0 or len(clusters) < 2:
        return set()
    target = val_fraction * len(labels)
    order = list(clusters)
    random.Random(seed).shuffle(order)
    chosen: set[int] = set()
    size = 0
    for c in order:
        if size >= target:
            break
        if len(chosen) + 1 >= len(clusters):
            break
        if size and size + c.size > target + c.size / 2:
            continue
        chosen.add(c.id)
        size += c.size
    if not chosen:
        chosen.add(min(clusters, key=lambda c: c.size).id)
    for c in clusters:
        c.split = "validation" if c.id in chosen else "train"
    return chosen
