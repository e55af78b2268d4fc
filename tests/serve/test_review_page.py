"""The review page in a real browser (Debian's headless Chromium driven by selenium):
upload an image, the verdict, the heatmap with its regions and the histogram appear."""

from __future__ import annotations

import os

from servetest import serving

from pyimgano_testutils import headless_chromium

SCREENSHOT_ENV = "PYIMGANO_REVIEW_SCREENSHOT"  # where to keep a screenshot of the page, if set


def test_uploading_an_image_shows_the_verdict_heatmap_regions_and_histogram(serve_model, serve_site, serve_data,
                                                                            tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    defect = sorted((serve_data / "alpha" / "test" / "spot").glob("*.png"))[0]
    good = sorted((serve_data / "alpha" / "test" / "good").glob("*.png"))[0]
    key_file = tmp_path / "key"
    key_file.write_text("page-key\n")
    with serving(serve_model, serve_site, "--api-key-file", str(key_file)) as server, headless_chromium() as browser:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 20)
        wait.until(ec.text_to_be_present_in_element((By.ID, "model"), "API key"))  # 401 without the key
        key = browser.find_element(By.ID, "api-key")
        key.send_keys("page-key")
        browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
        wait.until(ec.text_to_be_present_in_element((By.ID, "model"), "benchtest:mean"))
        browser.find_element(By.ID, "file-input").send_keys(f"{defect}\n{good}")
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "2 image(s) scored, 1 anomalous"))
        cards = browser.find_elements(By.CSS_SELECTOR, ".result")
        verdicts = sorted(card.find_element(By.CSS_SELECTOR, ".verdict").text for card in cards)
        assert verdicts == ["ANOMALOUS", "OK"]
        flagged = next(c for c in cards if c.find_element(By.CSS_SELECTOR, ".verdict").text == "ANOMALOUS")
        heatmap = flagged.find_element(By.CSS_SELECTOR, "img.heatmap")
        assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heatmap) == 24
        assert flagged.find_elements(By.CSS_SELECTOR, "svg rect.region")  # the defect region is boxed
        assert defect.name in flagged.text and "p-value" in flagged.text
        histogram = flagged.find_element(By.CSS_SELECTOR, "canvas.histogram")
        painted = browser.execute_script(
            "const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i+1] !== 255) n++; return n;",
            histogram)
        assert painted > 100  # bars, the threshold line and the score line were drawn
        logs = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
                and "401" not in entry["message"]]
        assert not logs, logs
        if os.environ.get(SCREENSHOT_ENV):
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(os.environ[SCREENSHOT_ENV])
