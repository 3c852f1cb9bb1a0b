"""results: what runs mean -- reading run directories, the statistics (:mod:`.stats`: bootstrap CIs,
paired tests, survival), expressivity (:mod:`.expressivity`), the leaderboard (:mod:`.leaderboard`) and the
regression gate (:mod:`.gate`). Reads tables only (clips.csv, curves.csv, frames.parquet, thumbs.parquet):
may import io and errors, never video, faces, clip sources, generators or torch (import-linter contract in
pyproject.toml)."""
