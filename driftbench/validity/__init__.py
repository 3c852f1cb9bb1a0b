"""validity: does driftbench measure what it claims? The validity suite on real footage (:mod:`.validate`:
verification, no-drift control, decoupling, age), the identity thresholds calibrated on labelled photo pairs
(:mod:`.calibration`) and the verification metrics they use (:mod:`.verification`). Drives the measuring
stage like a run does: may import measure, faces, sources, runner, config and io; never report internals or
cli."""
