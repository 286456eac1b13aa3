"""How much the reasons of one answer say, measured side by side on one index.

    python -m bench.reasons [--index var/demo/index]     # after `make demo`

Every catalog song is asked for its top 5 (by id, routed like RecommendById), and each hit's
reason (the two feature groups it names) is read three ways:
- raw gap: the groups with the smallest standardised gap (the reasons before contrast);
- contrast: the groups with the lowest gap / typical neighbour gap in the hit's genre;
- contrast + answer: the service's sentences (a group already named in the answer must stand
  out more to be named again: reasons.sentences).
Prints the share of all hits that give the single most common reason, the mean number of
distinct reasons per 5-hit answer, and the share of answers whose 5 hits all give one reason;
then, for the service's sentences, how often each feature group is named (a group named in
more than FIRES_AT_MOST of the hits says little about any one of them).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from services.recommender.index.store import load_current
from services.recommender.search.options import Options
from services.recommender.search.reasons import named_groups
from services.recommender.search.recommend import Query, recommend
from services.recommender.search.routing import Route

FIRES_AT_MOST = 0.20  # the share of hits a reason may be named in and still mean something


def groups(chosen) -> frozenset[str]:
    return frozenset(r.group for r in chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("var/demo/index"))
    args = parser.parse_args()
    index = load_current(args.index)
    if index is None:
        raise SystemExit(f"no index at {args.index}: run `make demo` first")
    answers: dict[str, list[list[frozenset[str]]]] = {"raw gap": [], "contrast": [], "contrast + answer": []}
    for row, song in enumerate(index.songs):
        query = Query.one(index.raw_rows([row])[0], [Route(song.genre, 1.0, "catalog_genre")], Options(k=5), song.id,
                          fill=index.genres)
        hits = recommend(index, query).hits
        answers["raw gap"].append([groups(sorted(h.reasons, key=lambda r: r.gap)[:2]) for h in hits])
        answers["contrast"].append([groups(named_groups([h.reasons])[0]) for h in hits])  # each hit alone
        answers["contrast + answer"].append([groups(c) for c in named_groups([h.reasons for h in hits])])
    total = sum(len(a) for a in answers["raw gap"])
    print(f"{len(index.songs)} answers of 5 ({total} hits) from {args.index}")
    print(f"{'reasons by':<20} {'most common reason':>22} {'distinct per answer':>20} {'answers all alike':>18}")
    for name, per_answer in answers.items():
        reason, count = Counter(r for a in per_answer for r in a).most_common(1)[0]
        distinct = sum(len(set(a)) for a in per_answer) / len(per_answer)
        alike = sum(len(set(a)) == 1 for a in per_answer) / len(per_answer)
        print(f"{name:<20} {count:>5}/{total} ({count / total:4.0%}) {distinct:>20.2f} {alike:>18.0%}   "
              f"most common: {' + '.join(sorted(reason))}")
    named = Counter(group for answer in answers["contrast + answer"] for hit in answer for group in hit)
    print(f"\nhow often each group is named in the service's sentences (of {total} hits; "
          f"over {FIRES_AT_MOST:.0%} is marked):")
    for group, count in named.most_common():
        print(f"  {group:<20} {count:>5} ({count / total:4.0%}){'  *' if count / total > FIRES_AT_MOST else ''}")


if __name__ == "__main__":
    main()
