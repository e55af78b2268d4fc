"""``pyimgano serve``: the answers, the endpoints, the API key, the bounds and the fault cases."""

from __future__ import annotations

import base64
import io
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from servetest import metric, serving

import pyimgano
from pyimgano.cli.serve import exposure_warning
from pyimgano.thresholds import DEFAULT_IMAGE_THRESHOLD, make_strategy
from pyimgano_testutils import plugin_on_path


def png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_predict_answers_what_the_pipeline_gives_with_regions_and_maps(serve_model, serve_site, serve_data):
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    good = sorted((serve_data / "alpha" / "test" / "good").glob("*.png"))
    with plugin_on_path(serve_site, modules=("benchtest_",)):
        expected = pyimgano.load(serve_model).predict([spot[0], good[0]])
    with serving(serve_model, serve_site) as server:
        files = [("image", ("defect.png", spot[0].read_bytes(), "image/png")),
                 ("image", ("good.png", good[0].read_bytes(), "image/png"))]
        answer = httpx.post(server.url + "/v1/predict?maps=true", files=files).json()
        raw = httpx.post(server.url + "/v1/predict", content=spot[0].read_bytes(),
                         headers={"Content-Type": "image/png"}).json()
    defect, normal = answer["images"]
    assert [defect["name"], normal["name"]] == ["defect.png", "good.png"]
    assert defect["score"] == pytest.approx(float(expected.scores[0]))
    assert normal["score"] == pytest.approx(float(expected.scores[1]))
    assert (defect["label"], normal["label"]) == (1, 0)
    assert defect["margin"] == pytest.approx(defect["score"] - defect["image_threshold"]) and defect["margin"] > 0
    assert 0 < defect["p_value"] <= normal["p_value"] <= 1
    assert defect["regions"] and defect["regions"][0]["area"] > 0 and len(defect["regions"][0]["bbox"]) == 4
    assert defect["anomalous_fraction"] > 0 and normal["regions"] == []
    heatmap = Image.open(io.BytesIO(base64.b64decode(defect["heatmap_png"])))
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(defect["mask_png"]))))
    assert heatmap.size == (24, 24) and mask.shape == (24, 24) and mask.max() == 255
    assert raw["images"][0]["score"] == pytest.approx(defect["score"]) and "heatmap_png" not in raw["images"][0]


def test_the_endpoints_describe_the_model_count_in_metrics_and_are_documented(serve_model, serve_site, serve_data):
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    with serving(serve_model, serve_site) as server:
        assert httpx.get(server.url + "/healthz").json() == {"status": "alive"}
        assert httpx.get(server.url + "/readyz").json()["status"] == "ready"
        model = httpx.get(server.url + "/v1/model").json()
        for path in spot:
            assert httpx.post(server.url + "/v1/predict", files={"image": path.read_bytes()}).status_code == 200
        text = httpx.get(server.url + "/metrics").text
        schema = httpx.get(server.url + "/openapi.json").json()
        assert httpx.get(server.url + "/docs").status_code == 200
    assert model["detector"] == "benchtest:mean" and model["params"]["sigma"] == 1.0
    assert model["image_threshold"]["strategy"] == make_strategy(DEFAULT_IMAGE_THRESHOLD).strategy and model["pixel_threshold"]["value"] is not None
    assert len(model["calibration"]["normal_scores"]) == model["calibration"]["n_normal"] == 2
    assert model["calibration"]["image_size"] == [24, 24] and model["versions"]["pyimgano"] == pyimgano.__version__
    assert metric(text, "pyimgano_images_scored_total") == 4 + 0  # the warm-up image is not counted
    assert metric(text, "pyimgano_anomalies_flagged_total") == 4
    assert metric(text, "pyimgano_requests_total", endpoint="/v1/predict", code="200") == 4
    assert metric(text, "pyimgano_predict_seconds_count") == 4
    assert metric(text, "process_resident_memory_bytes") > 0
    assert {"/v1/predict", "/v1/model", "/metrics", "/healthz", "/readyz"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]


def test_the_api_key_guards_every_endpoint_but_health(serve_model, serve_site, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret-key\n")
    with serving(serve_model, serve_site, "--api-key-file", str(key_file)) as server:
        for path in ("/v1/model", "/metrics"):
            assert httpx.get(server.url + path).status_code == 401
            assert httpx.get(server.url + path, headers={"X-API-Key": "wrong"}).status_code == 401
            assert httpx.get(server.url + path, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        wrong = httpx.post(server.url + "/v1/predict", content=b"x", headers={"X-API-Key": "s3cret"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
        assert httpx.get(server.url + "/v1/model", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert httpx.get(server.url + "/healthz").status_code == 200
        assert httpx.get(server.url + "/readyz").status_code == 200
    with serving(serve_model, serve_site, env={"PYIMGANO_API_KEY": "from-env"}) as server:
        assert httpx.get(server.url + "/v1/model").status_code == 401
        assert httpx.get(server.url + "/v1/model", headers={"X-API-Key": "from-env"}).status_code == 200


def test_serve_warns_when_it_listens_beyond_this_machine_without_a_key():
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("::1", None) is None
    assert exposure_warning("localhost", None) is None and exposure_warning("0.0.0.0", "key") is None
    line = exposure_warning("0.0.0.0", None)
    assert "without an API key" in line and "\n" not in line


def truncated_png(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def test_bad_uploads_are_one_line_errors_and_the_service_goes_on(serve_model, serve_site, serve_data):
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    big = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(big, format="PNG")
    with serving(serve_model, serve_site, "--max-body-mb", "0.05", "--max-images", "3",
                 env={"PYIMGANO_MAX_IMAGE_PIXELS": "1000"}) as server:
        post = lambda **kw: httpx.post(server.url + "/v1/predict", **kw)  # noqa: E731
        malformed = post(files=[("image", ("a.png", spot[0].read_bytes())), ("image", ("junk.png", b"not an image"))])
        assert malformed.status_code == 400 and "junk.png" in malformed.json()["error"]
        assert "unknown or corrupt format" in malformed.json()["error"]
        truncated = post(files={"image": ("half.png", truncated_png(spot[1]))})
        assert truncated.status_code == 400 and "half.png" in truncated.json()["error"]
        assert "corrupt or truncated" in truncated.json()["error"]
        oversized = post(content=b"\0" * 60_000, headers={"Content-Type": "image/png"})
        assert oversized.status_code == 413 and "max_body_mb" in oversized.json()["error"]
        too_many = post(files=[("image", (f"{i}.png", spot[0].read_bytes())) for i in range(4)])
        assert too_many.status_code == 413 and "max_images" in too_many.json()["error"]
        too_large = post(files={"image": ("big.png", big.getvalue())})
        assert too_large.status_code == 413 and "exceeds the limit of 1,000 pixels" in too_large.json()["error"]
        empty = post(content=b"", headers={"Content-Type": "text/plain"})
        assert empty.status_code == 400
        assert post(files={"image": spot[0].read_bytes()}).status_code == 200
        text = httpx.get(server.url + "/metrics").text
    assert metric(text, "pyimgano_request_errors_total", reason="bad_image") == 2
    assert metric(text, "pyimgano_request_errors_total", reason="too_large") == 2
    assert metric(text, "pyimgano_images_scored_total") == 1


def raw_request(url: str, body_length: int) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
                 f"Content-Length: {body_length}\r\n\r\n".encode())
    return sock


def test_a_client_that_disconnects_mid_upload_costs_nothing_else(serve_model, serve_site, serve_data):
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    with serving(serve_model, serve_site) as server:
        sock = raw_request(server.url, 20_000)
        sock.sendall(b"\x89PNG" + b"\0" * 1000)
        sock.close()
        deadline = time.monotonic() + 10
        while metric(httpx.get(server.url + "/metrics").text, "pyimgano_request_errors_total",
                     reason="disconnected") < 1:
            assert time.monotonic() < deadline, "the disconnect was never noticed"
            time.sleep(0.05)
        assert httpx.post(server.url + "/v1/predict", files={"image": spot[0].read_bytes()}).status_code == 200
        text = httpx.get(server.url + "/metrics").text
    assert metric(text, "pyimgano_images_scored_total") == 1
    assert metric(text, "pyimgano_predict_in_progress") == 0


def test_a_slow_client_gets_408_while_others_are_served(serve_model, serve_site, serve_data):
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    with serving(serve_model, serve_site, "--timeout-s", "1.5") as server:
        sock = raw_request(server.url, 5_000)
        sock.sendall(b"\x89PNG")  # then nothing more: a slow (or stuck) uploader
        started = time.monotonic()
        fast = httpx.post(server.url + "/v1/predict", files={"image": spot[0].read_bytes()})
        assert fast.status_code == 200 and time.monotonic() - started < 1.5
        sock.settimeout(10)
        reply = b""
        while b"}" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode(errors="replace")
        sock.close()
        assert reply.startswith("HTTP/1.1 408") and "timeout_s" in reply
        text = httpx.get(server.url + "/metrics").text
    assert metric(text, "pyimgano_request_errors_total", reason="slow_upload") == 1


def test_concurrent_requests_are_batched_and_a_full_queue_says_retry(serve_model, serve_site, serve_data):
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    with serving(serve_model, serve_site, "--batch-window-ms", "400", "--max-batch", "8") as server:
        answers: list[dict] = []

        def send(path: Path) -> None:
            answers.append(httpx.post(server.url + "/v1/predict", files={"image": path.read_bytes()},
                                      timeout=30).json())

        threads = [threading.Thread(target=send, args=(p,)) for p in spot]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(answers) == 4 and max(a["batch_images"] for a in answers) >= 2
    assert all(a["images"][0]["label"] == 1 for a in answers)

    with serving(serve_model, serve_site, "--batch-window-ms", "3000", "--max-queue", "1") as server:
        first: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: first.append(
            httpx.post(server.url + "/v1/predict", files={"image": spot[0].read_bytes()}, timeout=30)))
        thread.start()
        deadline = time.monotonic() + 10
        while metric(httpx.get(server.url + "/metrics").text, "pyimgano_queued_images") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        busy = httpx.post(server.url + "/v1/predict", files={"image": spot[1].read_bytes()})
        thread.join()
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "max-queue" in busy.json()["error"]
    assert first[0].status_code == 200


def test_sigterm_during_a_batch_answers_every_accepted_request_then_exits_0(serve_model, serve_site, serve_data):
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    answers: list[httpx.Response] = []
    with serving(serve_model, serve_site, "--batch-window-ms", "3000") as server:
        threads = [threading.Thread(target=lambda p=p: answers.append(
            httpx.post(server.url + "/v1/predict", files={"image": p.read_bytes()}, timeout=30))) for p in spot]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while metric(httpx.get(server.url + "/metrics").text, "pyimgano_queued_images") < len(spot):
            assert time.monotonic() < deadline, "the requests never reached the queue"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)  # while the batch is being gathered
        for thread in threads:
            thread.join()
        code, out, err = server.stop()
    assert [a.status_code for a in answers] == [200] * len(spot)
    assert code == 0, err
    assert "every accepted request was answered" in out


def test_a_model_that_cannot_score_the_warm_up_image_stops_serve_with_one_line(serve_model, serve_site, tmp_path):
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(other)  # the mean detector takes 24 x 24 only
    with serving(serve_model, serve_site, "--warmup-image", str(other), ready=False) as server:
        _, err = server.process.communicate(timeout=60)  # it stops by itself
    assert server.process.returncode == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: warm-up failed, the model cannot score")


def test_serve_without_the_extra_or_with_bad_settings_is_one_line(serve_model, capsys, monkeypatch):
    from pyimgano.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if pyimgano-core[serve] were not installed
    assert main(["serve", "--model", str(serve_model)]) == 2
    assert "pip install 'pyimgano-core[serve]'" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["serve", "--model", str(serve_model), "--max-batch", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: max_batch 0: Input should be greater than or equal to 1"


def test_a_request_that_times_out_in_the_queue_is_withdrawn_and_never_scored(serve_model, serve_site, serve_data):
    spot = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))
    with serving(serve_model, serve_site, "--timeout-s", "0.5", "--batch-window-ms", "2000") as server:
        late = httpx.post(server.url + "/v1/predict", files={"image": spot[0].read_bytes()})
        assert late.status_code == 504 and "timeout_s" in late.json()["error"]
        deadline = time.monotonic() + 10
        while metric(httpx.get(server.url + "/metrics").text, "pyimgano_queued_images") > 0:  # its batch came and went
            assert time.monotonic() < deadline
            time.sleep(0.05)
        text = httpx.get(server.url + "/metrics").text
    assert metric(text, "pyimgano_batch_seconds_count") == 1  # the warm-up only: the withdrawn image cost no batch
    assert metric(text, "pyimgano_images_scored_total") == 0
    assert metric(text, "pyimgano_request_errors_total", reason="timeout") == 1
