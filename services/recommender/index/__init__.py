"""The served index: per-genre graphs, the song columns, the vector space, generations swapped live."""
