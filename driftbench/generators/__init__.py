"""generators: adapters for hosted video generators (Kling, and any API described by a ``provider: http``
config): chained long-take generation with an on-disk request cache, a spend guard and retries. The clip source
that uses them is :mod:`driftbench.sources.generators`. May import weights, measure.video (reading images) and
io/errors; know nothing of Hydra or the CLI (import-linter contract)."""
