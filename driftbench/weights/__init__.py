"""weights: the store of model weights (:mod:`.store`): a local directory ($DRIFTBENCH_MODELS, then
~/.cache/driftbench/models), then weights shipped in an installed package, then an official download with a
sha256 check. ("model" elsewhere in driftbench means a clip source, ``conf/model/*``.) May import io and
errors only."""
