"""One catalog song as the answers show it (made on demand from the columns in songs.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SongRecord:
    id: str
    title: str
    artist: str
    release_date: str
    genre: str  # the index it lives in
    predicted_genre: str = ""
    # Share of the voting folds that agreed with predicted_genre; 1.0 when not classified.
    vote_share: float = 1.0
    # Genres ranked by the vote (best first), for the runner-up search.
    ranking: list[str] = field(default_factory=list)
    # The classifier's calibrated probability per genre (empty when not classified).
    probabilities: dict[str, float] = field(default_factory=dict)
    # "catalog" when the catalog gave the genre, "classifier" when the vote chose it.
    genre_source: str = "catalog"
    album: str = ""
    duration_seconds: float = 0.0  # the whole song; 0 when unknown
    year: int = 0  # 0 when unknown
