"""generators: adapters for hosted video generators (Kling, and any API described by a ``provider: http``
config): chained long-take generation with an on-disk request cache, a spend guard and retries. The clip
source that uses them is :mod:`driftbench.sources.generators`. May import weights, measure.video (reading
images) and io/errors; know nothing of Hydra or the CLI (import-linter contract).

Adding a generator API: describe it for the generic adapter (``provider: http`` and ``model.api`` in
``conf/model/<name>.yaml``), or, when it needs code, a module here with an :class:`.http.HttpProvider`
subclass, one entry ``"name": "driftbench.generators.module:Class"`` in :data:`.http.PROVIDERS` and the config
file. """
