"""pyimgano on the line: a long-running process that keeps a saved pipeline loaded.

- :mod:`pyimgano.service.results`: one scored image as a record (score, label, margin,
  p-value, regions, heatmap and mask PNGs), shared by both front ends;
- :mod:`pyimgano.service.batcher`: concurrent requests gathered into batches for one worker;
- :mod:`pyimgano.service.app`: the HTTP service and its review page (``pyimgano serve``,
  the ``serve`` extra: FastAPI, uvicorn, python-multipart, prometheus-client);
- :mod:`pyimgano.service.watch`: a folder a camera writes into (``pyimgano watch``).

docs/serve.md describes both.
"""
