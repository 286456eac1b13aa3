"""Small synthetic audio for tests that must always run (no real music needed)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, freq: float = 440.0, sr: int = 22050, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(seconds: float, f0: float = 100.0, f1: float = 4000.0, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.3 * np.sin(phase)).astype(np.float32)


def noise(seconds: float, sr: int = 22050, seed: int = 0, amp: float = 0.1) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def beats(seconds: float, bpm: float = 120.0, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """Clicks on a beat grid over a quiet chord: something with a tempo and a pitch."""
    y = tone(seconds, 220.0, sr, 0.1) + tone(seconds, 330.0, sr, 0.05)
    rng = np.random.default_rng(seed)
    period = int(sr * 60.0 / bpm)
    click = (rng.standard_normal(400) * np.exp(-np.arange(400) / 60.0)).astype(np.float32)
    for start in range(0, len(y) - 400, period):
        y[start : start + 400] += 0.5 * click
    return y


def encode(samples: np.ndarray, sr: int = 22050, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


SYNTH_GENRES = ("tones", "chirps", "noise", "beats")


def synthetic_song(genre: str, n: int, seconds: float = 35.0, sr: int = 22050) -> np.ndarray:
    """Song n of a synthetic "genre": the same recipe with different parameters."""
    if genre == "tones":
        return tone(seconds, 220.0 * (1.25**n), sr) + tone(seconds, 330.0 * (1.25**n), sr, 0.1)
    if genre == "chirps":
        return chirp(seconds, 80.0 + 40 * n, 2000.0 + 700 * n, sr)
    if genre == "noise":
        return noise(seconds, sr, seed=n, amp=0.05 + 0.03 * n)
    if genre == "beats":
        return beats(seconds, 90.0 + 12 * n, sr, seed=n)
    raise ValueError(genre)


def write_synthetic_catalog(folder: Path, per_genre: int = 5) -> Path:
    """A catalog CSV of synthetic WAV songs (4 genres, 3 artists) for tests and the offline demo."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["id,title,artist,release_date,genre,audio_path"]
    for genre in SYNTH_GENRES:
        for n in range(per_genre):
            song_id = f"{genre}-{n:02d}"
            sf.write(folder / f"{song_id}.wav", synthetic_song(genre, n), 22050)
            artist = f"Synth Lab {'ABC'[n % 3]}"
            released = f"{2010 + n}-0{1 + n % 9}-15"
            lines.append(f"{song_id},{genre.title()} No. {n},{artist},{released},{genre},{song_id}.wav")
    path = folder / "catalog.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
