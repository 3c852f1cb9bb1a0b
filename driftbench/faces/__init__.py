"""faces: face backends -- detect, align, embed (:mod:`.sface`, :mod:`.dlib`, :mod:`.insightface_backend`,
:mod:`.deepface_backend`, all behind :class:`.base.FaceBackend`), MediaPipe landmarks, blendshapes and head pose
(:mod:`.landmarker`), apparent age (:mod:`.age`) and the ONNX Runtime sessions they run on (:mod:`.engines`). Pure
image-in, numbers-out: may import only weights (the weights store) and io/errors; never Hydra, clip sources,
measurement, results or the command line."""
