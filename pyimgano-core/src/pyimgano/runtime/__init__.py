"""The torch-free runtime: run a folder written by ``pyimgano export`` with onnxruntime
(or OpenVINO), NumPy and :mod:`pyimgano.preprocess` alone.

The runtime is the detector ``core:exported`` (:class:`~pyimgano.runtime.detector.ExportedDetector`),
so ``pyimgano predict --model EXPORTED_DIR`` and ``pyimgano benchmark --detector exported
--set path=EXPORTED_DIR`` run it like any other detector. It needs the optional extra
``pip install 'pyimgano-core[onnx]'``; nothing here imports onnxruntime until a graph is opened.
See ``docs/deploy.md``.
"""
