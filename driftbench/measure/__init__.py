"""measure: the measuring stage -- from a clip file to its tables. Video sampling and decoding
(:mod:`.video`), the per-frame face analyzer (:mod:`.signals`: backend + landmarks + age), choosing the
character's face among several (:mod:`.track`), the signal cache keyed by content and settings
(:mod:`.cache`), identity scores decoupled from pose and expression (:mod:`.decouple`), the per-clip and
per-bin tables and drift
metrics (:mod:`.drift`), one clip end to end (:mod:`.clip`), the executors that map clips over processes or
Ray
(:mod:`.executors`), and background imports (:mod:`.preload`). May import faces, weights, sources.base (the
Clip record), validity.verification (the decoupler's photo checks) and io/errors; never results, report,
runner or cli. :mod:`.video` imports no Hydra.

Adding an executor: a function ``(clips, settings, *, workers, address, on_result)`` in :mod:`.executors`, one
entry in :data:`.executors.EXECUTORS` and ``conf/executor/<name>.yaml``."""
