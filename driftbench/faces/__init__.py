"""faces: face backends -- detect, align, embed (:mod:`.sface`, :mod:`.dlib`, :mod:`.insightface_backend`,
:mod:`.deepface_backend`, all behind :class:`.base.FaceBackend`), MediaPipe landmarks, blendshapes and head
pose (:mod:`.landmarker`), apparent age (:mod:`.age`) and the ONNX Runtime sessions they run on
(:mod:`.engines`). Pure image-in, numbers-out: may import only weights (the weights store) and io/errors;
never Hydra, clip
sources, measurement, results or the command line.

Adding a face backend: a module here with a class whose ``__init__(device, download, **options)`` builds it,
with ``detect``/``align``/``embed`` and ``info`` (:class:`.base.FaceBackend`) and optionally a static
``preflight(download,
**options) -> threshold key``; one entry ``"name": "driftbench.faces.module:Class"`` in
:data:`.base.BACKENDS`; and
``conf/face/<name>.yaml`` with ``backend: <name>`` and its ``options:`` (handed to the class as keywords, the
same way for every backend). An installed package registers one under the ``driftbench.faces`` entry-point
group. """
