"""The report's threshold explorer: look at the test split's trade-off, then decide.

Per (data set, category, detector) one block: a slider over the image threshold; for the
threshold under it, the false-reject rate (good test images flagged), recall, precision
and F1 on the test split, beside the same figures at the calibrated threshold. The slider
track marks the calibrated threshold and the lowest threshold whose test false-reject rate
meets the target (docs/benchmark.md). The scores travel in the page as JSON and
:data:`SCRIPT` (plain JavaScript, no library, nothing fetched) does the counting, so the
page works offline.
"""

from __future__ import annotations

import html
import json
from typing import Any

from pyimgano.calibration import CONSISTENT_P

STYLE = """
.explorer { border: 1px solid #d0d0d0; padding: 8px 12px; margin: 8px 0 16px; width: min(100%, 700px); }
.explorer .track { position: relative; height: 14px; margin: 2px 0 4px; }
.explorer .mark { position: absolute; top: 0; width: 2px; height: 14px; }
.explorer .mark.cal { background: #1f6fd1; } .explorer .mark.target { background: #d17a1f; }
.explorer input[type=range] { width: 100%; } .explorer .over { color: #b00020; font-weight: bold; }
.explorer .near { color: #8a5a00; }
"""

# Reads every .explorer block's JSON and wires its slider; the figures follow deployed.py's
# definitions (flagged: score > threshold).
SCRIPT = """
(function () {
  function figures(d, t) {
    var fp = 0, tp = 0, i;
    for (i = 0; i < d.good.length; i++) { if (d.good[i] > t) fp++; }
    for (i = 0; i < d.defective.length; i++) { if (d.defective[i] > t) tp++; }
    var fn = d.defective.length - tp;
    return {fpr: d.good.length ? fp / d.good.length : null,
            recall: d.defective.length ? tp / d.defective.length : null,
            precision: tp + fp ? tp / (tp + fp) : null,
            f1: tp + fp + fn ? 2 * tp / (2 * tp + fp + fn) : null};
  }
  function fmt(v) { return v === null || v === undefined ? "\\u2013" : v.toFixed(3); }
  // P(at least k of m good images rejected) were the false-reject rate p (binomial upper tail)
  function rejectsProbability(k, m, p) {
    if (k <= 0) return 1;
    if (p <= 0) return 0;
    if (p >= 1 || k > m) return k > m ? 0 : 1;
    var logTerm = k * Math.log(p) + (m - k) * Math.log(1 - p), i, sum = 0;
    for (i = 1; i <= k; i++) logTerm += Math.log((m - k + i) / i);
    var term = Math.exp(logTerm);
    for (i = k; i <= m; i++) { sum += term; term *= (m - i) / (i + 1) * p / (1 - p); }
    return Math.min(1, sum);
  }
  function place(el, d, t) { el.style.left = (100 * (t - d.lo) / (d.hi - d.lo)) + "%"; }
  function targetThreshold(d) {
    var cands = d.good.concat(d.defective, [d.lo]).sort(function (a, b) { return a - b; });
    for (var i = 0; i < cands.length; i++) {
      var f = figures(d, cands[i]).fpr;
      if (f !== null && f <= d.target) return cands[i];
    }
    return null;
  }
  function show(row, d, t, f) {
    var cells = row.querySelectorAll("td");
    cells[1].textContent = t.toPrecision(6);
    var m = d.good.length, k = f.fpr === null ? 0 : Math.round(f.fpr * m);
    var bound = d.upper === null ? d.target : d.upper;
    cells[2].textContent = f.fpr === null ? fmt(null) : fmt(f.fpr) + " (" + k + " of " + m + ")";
    cells[2].className = "";
    cells[2].title = "";
    if (d.target !== null && f.fpr !== null && f.fpr > bound) {
      var prob = rejectsProbability(k, m, bound);
      cells[2].className = prob < d.consistent_p ? "over" : "near";
      cells[2].title = k + " or more rejects of " + m + " good images: probability " + prob.toFixed(3) +
        " were the rate " + bound.toPrecision(3) + (prob < d.consistent_p ? " (unlikely: the promise does not hold here)"
        : " (a count this high is not unusual at that rate)");
    }
    cells[3].textContent = fmt(f.recall); cells[4].textContent = fmt(f.precision); cells[5].textContent = fmt(f.f1);
  }
  var blocks = document.querySelectorAll(".explorer");
  for (var b = 0; b < blocks.length; b++) {
    (function (block) {
      var d = JSON.parse(block.querySelector("script[type='application/json']").textContent);
      var slider = block.querySelector("input[type=range]");
      var steps = Number(slider.max);
      function at(v) { return d.lo + (d.hi - d.lo) * v / steps; }
      function update(exact) {  // exact: a threshold to show as it is (the calibrated one)
        var t = typeof exact === "number" ? exact : at(Number(slider.value));
        show(block.querySelector("tr.now"), d, t, figures(d, t));
      }
      if (d.threshold !== null) {
        show(block.querySelector("tr.cal"), d, d.threshold, figures(d, d.threshold));
        place(block.querySelector(".mark.cal"), d, d.threshold);
      }
      var tt = d.target === null ? null : targetThreshold(d);
      var tmark = block.querySelector(".mark.target");
      if (tt === null) { tmark.style.display = "none"; } else { place(tmark, d, tt); }
      function reset() {
        if (d.threshold === null) { update(); return; }
        slider.value = Math.round(steps * (d.threshold - d.lo) / (d.hi - d.lo));
        update(d.threshold);
      }
      slider.addEventListener("input", update);
      block.querySelector("button.reset").addEventListener("click", reset);
      reset();
    })(blocks[b]);
  }
})();
"""
STEPS = 1000


def explorer_data(good: list[float], defective: list[float], deployed: dict[str, Any]) -> dict[str, Any] | None:
    """What one block embeds; None without good or without defective test scores."""
    if not good or not defective:
        return None
    threshold = deployed.get("image_threshold")
    values = [*good, *defective, *([threshold] if threshold is not None else [])]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.02 or 1.0
    return {"good": [float(v) for v in good], "defective": [float(v) for v in defective],
            "threshold": threshold, "target": deployed.get("image_fpr_target"),
            "upper": deployed.get("image_fpr_upper"), "n": deployed.get("n_calibration"),
            "consistent_p": CONSISTENT_P, "lo": lo - pad, "hi": hi + pad}


def explorer_html(label: str, data: dict[str, Any]) -> str:
    """One block (the page includes :data:`STYLE` and :data:`SCRIPT` once)."""
    e = html.escape
    payload = json.dumps(data).replace("</", "<\\/")
    target = data["target"]
    promise = ("no target rate (a fixed or F1 threshold)" if target is None else
               f"target false-reject rate {target:g}" + (
                   f", at most {data['upper']:.3g} with 95% confidence from {data['n']} normal calibration scores"
                   if data.get("upper") is not None else ""))
    row = "".join("<td></td>" for _ in range(5))
    return (
        f'<div class="explorer"><script type="application/json">{payload}</script>'
        f"<b>Threshold explorer: {e(label)}</b> &middot; {e(promise)}"
        f'<div class="track"><span class="mark cal" title="calibrated threshold"></span>'
        f'<span class="mark target" title="lowest threshold meeting the target on the test split"></span></div>'
        f'<input type="range" min="0" max="{STEPS}" step="1" value="0" aria-label="image threshold"> '
        '<button class="reset" type="button">back to the calibrated threshold</button>'
        "<table><thead><tr><th class='name'></th><th>threshold</th><th>false-reject rate</th><th>recall</th>"
        "<th>precision</th><th>F1</th></tr></thead><tbody>"
        f"<tr class='now'><td class='name'>slider</td>{row}</tr>"
        f"<tr class='cal'><td class='name'>calibrated</td>{row}</tr></tbody></table>"
        '<div class="legend">On the test split: false-reject rate = good images flagged, recall = defective '
        "images flagged. Marks: blue, the calibrated threshold; orange, the lowest threshold whose test "
        "false-reject rate meets the target. A false-reject rate above the promised bound is brown when "
        f"that many rejects of the good images are still likely at the bound (probability {CONSISTENT_P:g} or "
        "more: few good images measure a rate only coarsely) and red when they are not (the promise does "
        "not hold on this split); hover over it for the probability.</div></div>"
    )
