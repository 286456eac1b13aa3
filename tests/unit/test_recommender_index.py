"""Indexes, generations, the recommendation rules and the catalog, without servers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from services.featurizer.schema import FEATURE_GROUPS, FEATURE_NAMES, SCHEMA_VERSION
from services.recommender.catalog.build import KEEP_GENERATIONS, build_generation
from services.recommender.catalog.reader import TEXT_LIMIT, CatalogError, read_catalog
from services.recommender.index.graph import DEFAULT_EF_SEARCH, GenreIndex, exact_search, normalise_rows
from services.recommender.index.store import SongRecord, current_generation, load_current
from services.recommender.search.options import Options
from services.recommender.search.recommend import Query, recommend
from services.recommender.search.routing import Route

DIM = len(FEATURE_NAMES)


def clustered(n: int, dim: int = DIM, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Vectors in overlapping clusters, like songs of a few styles (harder than uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)) * 2
    return (centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def build(tmp: Path, songs: list[SongRecord], vectors: np.ndarray) -> int:
    return build_generation(tmp, songs, vectors, SCHEMA_VERSION, FEATURE_NAMES, FEATURE_GROUPS, progress=False)


def routes(*genres: str) -> list[Route]:
    return [Route(g, 1.0, "requested") for g in genres]


def recall_at(k: int, vectors: np.ndarray, queries: np.ndarray, ef: int = DEFAULT_EF_SEARCH) -> float:
    graph = GenreIndex.build(vectors, np.arange(len(vectors)))
    unit = normalise_rows(vectors)
    found = 0
    for q in queries:
        exact, _ = exact_search(unit, q, k)
        approx = {row for row, _ in graph.search(q, k, ef)}
        found += len(approx & set(exact.tolist()))
    return found / (k * len(queries))


def test_hnsw_recall_at_5_against_exact_cosine() -> None:
    # Isotropic noise in all 57 dimensions is a hard case for HNSW (real features correlate).
    vectors = clustered(20_000)
    queries = clustered(200, seed=1)
    assert recall_at(5, vectors, queries) >= 0.95
    assert recall_at(5, vectors, queries, ef=8) < 0.95  # the check can fail: a starved search misses


def test_hnsw_similarity_is_cosine() -> None:
    vectors = clustered(500)
    graph = GenreIndex.build(vectors, np.arange(500))
    assert graph.count == 500
    (row, sim), *_ = graph.search(vectors[3] * 7.0, 3)  # scale does not matter to cosine
    assert row == 3 and sim == pytest.approx(1.0, abs=1e-5)
    rows, sims = exact_search(normalise_rows(vectors), vectors[3], 3)
    assert rows[0] == 3 and sims[0] == pytest.approx(1.0, abs=1e-5)


def songs_and_vectors(per_genre: int = 30) -> tuple[list[SongRecord], np.ndarray]:
    songs = [
        SongRecord(f"{g}-{i}", f"{g} song {i}", f"artist {i % 4}", "2001-02-03", g, g, 1.0, [g])
        for g in ("rock", "jazz")
        for i in range(per_genre)
    ]
    return songs, clustered(len(songs), clusters=6)


def test_generations_swap_atomically_and_old_ones_are_pruned(tmp_path: Path) -> None:
    songs, vectors = songs_and_vectors()
    assert load_current(tmp_path) is None
    published = []
    for _ in range(KEEP_GENERATIONS + 2):
        published.append(build(tmp_path, songs, vectors))
        assert current_generation(tmp_path) == published[-1]
    assert published == sorted(set(published))  # every build a new, larger number
    loaded = load_current(tmp_path)
    assert loaded.generation == published[-1] and loaded.genres == ["jazz", "rock"]
    assert [s.id for s in loaded.songs] == [s.id for s in songs]
    np.testing.assert_allclose(loaded.standardise(vectors).mean(axis=0), 0.0, atol=1e-4)
    kept = sorted(p.name for p in tmp_path.glob("gen-*"))
    assert len(kept) == KEEP_GENERATIONS and not list(tmp_path.glob(".gen-building-*"))


def test_concurrent_builds_publish_distinct_generations(tmp_path: Path) -> None:
    songs, vectors = songs_and_vectors()
    with ThreadPoolExecutor(4) as pool:
        numbers = list(pool.map(lambda _: build(tmp_path, songs, vectors), range(4)))
    assert len(set(numbers)) == 4
    assert current_generation(tmp_path) == max(numbers) == load_current(tmp_path).manifest["generation"]


def test_a_rebuild_in_an_empty_folder_outnumbers_what_was_served(tmp_path: Path) -> None:
    """Generation numbers never repeat: a catalog rebuilt from scratch (a new folder, a wiped
    volume) gets a larger number than any generation before it, so a running server swaps to it
    (it only takes newer numbers) and cache keys, which carry the number, miss old answers."""
    import asyncio
    import shutil

    from services.recommender.index.live import LiveIndex

    songs, vectors = songs_and_vectors()
    old = build(tmp_path, songs, vectors)
    live = LiveIndex(tmp_path, 1.0)
    asyncio.run(live.refresh())
    assert live.get().generation == old
    for path in list(tmp_path.iterdir()):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    new = build(tmp_path, songs[:10], vectors[:10])
    assert new > old and asyncio.run(live.refresh())
    assert live.get().generation == new and len(live.get().songs) == 10
    assert not list(tmp_path.glob(".gen-building-*"))


def test_recommend_rules(tmp_path: Path) -> None:
    songs, vectors = songs_and_vectors()
    # rock-1 is a re-release of rock-0 (same title and artist), rock-2 the same recording again
    songs[1].title, songs[1].artist = songs[0].title, songs[0].artist
    vectors[1] = vectors[0] + 0.01
    vectors[2] = vectors[5]
    build(tmp_path, songs, vectors)
    index = load_current(tmp_path)

    hits = recommend(index, Query.one(vectors[0], routes("rock"), Options(k=10), exclude_id="rock-0")).hits
    ids = [h.song.id for h in hits]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert "rock-0" not in ids and "rock-1" not in ids  # never the query song, nor its duplicate
    assert not {"rock-2", "rock-5"} <= set(ids)  # one recording at most once
    assert all(h.song.genre == "rock" for h in hits)
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True)
    assert all(h.reason.startswith(("unusually close in ", "closest for its genre in ")) for h in hits)

    query = Query.one(vectors[0], routes("rock"), Options(k=10, max_per_artist=1), exclude_id="rock-0")
    capped = recommend(index, query).hits
    artists = [h.song.artist for h in capped]
    assert len(artists) == len(set(artists)) == 4  # only four artists exist

    both = recommend(index, Query.one(vectors[0], routes("rock", "jazz"), Options(k=60))).hits
    assert {h.song.genre for h in both} == {"rock", "jazz"} and len(both) == 58  # no query, one of rock-2|5

    # an uploaded copy of a catalog song is the query song: left out
    copy = recommend(index, Query.one(vectors[7], routes("rock"), Options(k=5))).hits
    assert "rock-7" not in [h.song.id for h in copy]

    # a genre with too few songs is filled from the fill genres, after its own songs
    query = Query.one(vectors[0], routes("rock"), Options(k=40), exclude_id="rock-0", fill=["jazz", "rock"])
    filled = recommend(index, query)
    assert filled.searched == ["rock", "jazz"] and len(filled.hits) == 40
    assert [r.reason for r in filled.routes] == ["requested", "fill"]
    genres = [h.song.genre for h in filled.hits]
    assert genres == sorted(genres, key=lambda g: g != "rock") and genres.count("rock") == 27


def test_catalog_is_validated_row_by_row(tmp_path: Path) -> None:
    good = "id,title,artist,release_date,genre,audio_path\na,A,X,1999-12-31,Rock,a.wav\nb,B,,,, /abs/b.wav\n"
    (tmp_path / "ok.csv").write_text(good)
    songs, problems = read_catalog(tmp_path / "ok.csv", [tmp_path, Path("/abs")])
    assert songs[0].genre == "rock" and songs[0].audio_path == tmp_path / "a.wav" and problems == []
    assert songs[1].release_date == "" and songs[1].audio_path == Path("/abs/b.wav")
    (tmp_path / "bad.csv").write_text("id,title\na,A\n")
    with pytest.raises(CatalogError, match="missing columns"):
        read_catalog(tmp_path / "bad.csv")
    header = "id,title,artist,release_date,genre,audio_path\n"
    rows = [
        "a,A,X,,,a.wav",  # line 2: kept
        "a,B,X,,,b.wav",  # 3: duplicate id
        "c,C,X,31/12/1999,,c.wav",  # 4: date
        " ,D,X,,,d.wav",  # 5: empty id
        "e,E",  # 6: a short row
        f"f,{'t' * 200_000},X,,,f.wav",  # 7: a field over csv's 128 KiB limit
        f"g,{'T' * 5000},{'A' * 5000},,,g.wav",  # 8: kept, its text cut
        "h,H,X,,,h.wav,album,extra",  # 9: more fields than the header
        "i,I,X,,,i.wav",  # 10: kept: the rows after the bad ones are read
    ]
    (tmp_path / "mixed.csv").write_text(header + "\n".join(rows) + "\n")
    songs, problems = read_catalog(tmp_path / "mixed.csv")
    assert [s.id for s in songs] == ["a", "g", "i"]
    assert len(songs[1].title) == len(songs[1].artist) == TEXT_LIMIT
    why = "\n".join(problems)
    for line, message in [(3, "duplicate id"), (4, "release_date"), (5, "empty id"), (6, "fields where the header"),
                          (7, "field larger than field limit"), (9, "fields where the header")]:
        assert f"mixed.csv:{line}: " in why and message in why, (line, message, why)
    assert len(problems) == 6


def test_catalog_paths_stay_under_the_audio_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "music", tmp_path / "private"
    root.mkdir(), outside.mkdir()
    (outside / "secret.wav").write_bytes(b"x")
    (root / "link.wav").symlink_to(outside / "secret.wav")
    rows = ["a,,,,,a.wav", "b,,,,,sub/../b.wav", "c,,,,,../private/secret.wav", "d,,,,,/etc/passwd", "e,,,,,link.wav"]
    (root / "catalog.csv").write_text("id,title,artist,release_date,genre,audio_path\n" + "\n".join(rows) + "\n")
    songs, problems = read_catalog(root / "catalog.csv")
    assert [s.id for s in songs] == ["a", "b"]
    assert len(problems) == 3 and all("outside the audio root" in p for p in problems)
    songs, _ = read_catalog(root / "catalog.csv", [root, outside])  # the operator names the other folder
    assert [s.id for s in songs] == ["a", "b", "c", "e"]


def test_ingestion_reads_only_regular_files_within_the_cap(tmp_path: Path) -> None:
    import os
    import threading

    import grpc

    from services.common.errors import ServiceError
    from services.recommender.catalog.analysis import read_audio_file

    (tmp_path / "song.wav").write_bytes(b"RIFF" + bytes(100))
    assert len(read_audio_file(tmp_path / "song.wav", 1000)) == 104
    os.mkfifo(tmp_path / "fifo.wav")
    refused: dict[str, grpc.StatusCode] = {}

    def read(path: Path, cap: int) -> None:
        try:
            read_audio_file(path, cap)
        except ServiceError as exc:
            refused[path.name] = exc.code

    for path, cap in ((tmp_path / "fifo.wav", 1000), (Path("/dev/zero"), 1000), (tmp_path / "song.wav", 50)):
        reader = threading.Thread(target=read, args=(path, cap), daemon=True)
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), f"reading {path} hung"
    assert refused == {"fifo.wav": grpc.StatusCode.INVALID_ARGUMENT, "zero": grpc.StatusCode.INVALID_ARGUMENT,
                       "song.wav": grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_only_refusals_that_say_when_to_retry_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from services.common.errors import busy, exhausted, retry_after
    from services.recommender import upstream

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(upstream.asyncio, "sleep", no_wait)
    for error, calls_expected in ((exhausted("over the 64 MiB limit"), 1), (busy("queue full"), upstream.ATTEMPTS)):
        calls = []

        async def call(error=error, calls=calls):
            calls.append(1)
            raise error

        with pytest.raises(type(error)):
            asyncio.run(upstream.with_backoff(call))
        assert len(calls) == calls_expected

    class Failed:  # what a client sees: the status details in the trailing metadata
        def __init__(self, metadata) -> None:
            self._metadata = metadata

        def trailing_metadata(self):
            return self._metadata

    assert retry_after(Failed(busy("queue full", 0.5).trailing_metadata())) == pytest.approx(0.5)
    assert retry_after(Failed(exhausted("too big").trailing_metadata())) is None


def test_routed_genres_are_merged_by_similarity_plus_log_prior(tmp_path: Path) -> None:
    songs, vectors = songs_and_vectors()
    build(tmp_path, songs, vectors)
    index = load_current(tmp_path)
    query = vectors[0] + 0.5
    even = recommend(index, Query.one(query, [Route("rock", 0.5, "m"), Route("jazz", 0.5, "m")], Options(k=60))).hits
    assert [h.similarity for h in even] == sorted((h.similarity for h in even), reverse=True)
    # an unlikely genre needs a clearly closer song: with jazz at 1e-20 of rock's probability
    # (a prior of 0.05 x ln 1e-20 = -2.3, more than any two cosines differ), every rock song
    # ranks first, whatever the similarities
    skewed = recommend(index, Query.one(query, [Route("rock", 1.0, "m"), Route("jazz", 1e-20, "m")],
                                        Options(k=60))).hits
    genres = [h.song.genre for h in skewed]
    assert genres == sorted(genres, key=lambda g: g != "rock") and "jazz" in genres


def test_manifest_carries_the_feature_groups_reasons_use(tmp_path: Path) -> None:
    songs, vectors = songs_and_vectors()
    build(tmp_path, songs, vectors)
    index = load_current(tmp_path)
    assert index.manifest["feature_groups"] == FEATURE_GROUPS
    assert sorted(np.concatenate(list(index.groups.values())).tolist()) == list(range(len(FEATURE_NAMES)))
    hit = recommend(index, Query.one(vectors[0], routes("rock"), Options(k=1), exclude_id="rock-0")).hits[0]
    assert any(group in hit.reason for group in FEATURE_GROUPS)


def test_the_standardiser_fits_as_sklearn_does_on_an_ordinary_catalog() -> None:
    from sklearn.preprocessing import StandardScaler

    from services.recommender.catalog.build import fit_standardiser

    raw = clustered(300, dim=12, clusters=4, seed=5) * np.geomspace(0.01, 100, 12, dtype=np.float32)
    raw[:, 3] = 7.0  # a constant feature
    raw[:290, 5] = 0.0  # mostly one value (the ear's embedding has such dimensions): not clipped
    mean, scale = fit_standardiser(raw)
    expected = StandardScaler().fit(raw)
    np.testing.assert_allclose(mean, expected.mean_, rtol=1e-6)
    np.testing.assert_allclose(scale, expected.scale_, rtol=1e-5)
    assert scale[3] == 1.0


def test_one_absurd_song_barely_moves_other_songs_answers(tmp_path: Path) -> None:
    """A song whose features are 1e19 (a sine x 1e10 as a float WAV, before the featurizer refused
    such levels) against an ordinary one in its place: the scaler clips it before fitting, so the
    other songs keep their nearest song (with a plain mean and standard deviation its six
    features' scales grew to 1e18 and a sixth of the nearest songs changed)."""
    songs, vectors = songs_and_vectors()
    odd = SongRecord("odd", "odd", "x", "2001-01-01", "rock", "rock", 1.0, ["rock"])
    ordinary = clustered(1, clusters=6, seed=9)
    absurd = ordinary.copy()
    absurd[0, :6] = 5e19
    build(tmp_path / "ordinary", [*songs, odd], np.vstack([vectors, ordinary]))
    build(tmp_path / "absurd", [*songs, odd], np.vstack([vectors, absurd]))

    def nearest(index, row: int) -> list[str]:
        song = index.songs[row]
        query = Query.one(index.raw_rows([row])[0], routes(song.genre), Options(k=6), exclude_id=song.id)
        return [h.song.id for h in recommend(index, query).hits if h.song.id != "odd"][:4]

    before = [nearest(load_current(tmp_path / "ordinary"), r) for r in range(len(songs))]
    after = [nearest(load_current(tmp_path / "absurd"), r) for r in range(len(songs))]
    assert np.mean([b[0] == a[0] for b, a in zip(before, after, strict=True)]) >= 0.9
    assert np.mean([len(set(b) & set(a)) / 4 for b, a in zip(before, after, strict=True)]) >= 0.95


def test_a_genre_of_mostly_identical_songs_still_answers_whole() -> None:
    """A catalog that holds the same recording many times cuts hnswlib's graph up: asked for the
    whole genre it raised "Cannot return the results in a contiguous 2D array" (an INTERNAL to
    the caller). The search then answers exactly instead."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, DIM)).astype(np.float32)
    vectors[:1800] = vectors[0]
    graph = GenreIndex.build(vectors, np.arange(2000))
    hits = graph.search(vectors[-1], 2000)
    assert len(hits) == 2000 and len({row for row, _ in hits}) == 2000
    similarities = [sim for _, sim in hits]
    assert similarities == sorted(similarities, reverse=True) and hits[0][0] == 1999


def test_demo_catalogs_show_the_real_titles_and_artists_where_the_metadata_lists_them(tmp_path: Path) -> None:
    from devtools.demo_catalog import folder_catalog

    for name in ("jazz/jazz.00001.wav", "jazz/jazz.00002.wav"):
        (tmp_path / "genres" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "genres" / name).write_bytes(b"")
    (tmp_path / "gtzan_metadata.csv").write_text(
        "file,genre,artist,title,album,year\n"
        "genres/jazz/jazz.00001.wav,jazz,Billie Holiday,Strange Fruit,Day In Day Out,1939\n")
    listed, unlisted = folder_catalog(tmp_path / "genres")
    assert (listed.title, listed.artist, listed.album, listed.release_date) == (
        "Strange Fruit", "Billie Holiday", "Day In Day Out", "1939")
    assert (unlisted.title, unlisted.artist, unlisted.release_date) == ("", "", "")  # the file's tags decide
