"""sources: clip sources (``conf/model/*``), the first stage -- where a run's clips come from: a folder or
manifest of videos (:mod:`.folder`), the embedded synthetic clips with a known drift (:mod:`.synthetic`), or a hosted
generator (:mod:`.generators`, through :mod:`driftbench.generators`). A source yields :class:`.base.Clip` records
(path, character, prompt, seed, references) or :class:`.base.Skipped` ones. May import: generators, mitigations'
face warps, measure.video and measure.cache (decoding, content hashes), faces, weights, and the shared config/io/
errors/plugins modules; never results, report, runner or cli."""
