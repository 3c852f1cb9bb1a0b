"""sources: clip sources (``conf/model/*``), the first stage -- where a run's clips come from: a folder or
manifest of videos (:mod:`.folder`), the embedded synthetic clips with a known drift (:mod:`.synthetic`), or
a hosted generator (:mod:`.generators`, through :mod:`driftbench.generators`). A source yields
:class:`.base.Clip` records (path, character, prompt, seed, references) or :class:`.base.Skipped` ones. May
import: generators,
mitigations' face warps, measure.video and measure.cache (decoding, content hashes), faces, weights, and the
shared config/io/ errors/plugins modules; never results, report, runner or cli.

Adding a clip source: a module here with a factory ``(cfg, ctx) -> ClipSource`` (a class whose ``clips()``
yields Clip/Skipped; optionally a static ``preflight(cfg)`` for checks before any work); one entry
``"name": "driftbench.sources.module:Factory"`` in :data:`.base.SOURCES`; and ``conf/model/<name>.yaml``. An
installed package registers one under the ``driftbench.sources`` entry-point group.
"""
