"""The page `headstart serve` shows at ``/``: drop or pick an image, see its top-5 labels as bars, and on request
its Grad-CAM overlay (``POST /explain``). One file, no external scripts or fonts (the server may run with no
network)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>headstart: {{RUN}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px system-ui,sans-serif;max-width:720px;margin:2em auto;padding:0 1em;color:#222}
 #drop{border:2px dashed #888;border-radius:10px;padding:2.5em;text-align:center;cursor:pointer}
 #drop.over{background:#eef5ff;border-color:#36c}
 #preview{max-width:100%;max-height:300px;margin:1em auto;display:none}
 .row{display:flex;align-items:center;gap:.6em;margin:.3em 0}
 .label{width:12em;text-align:right;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
 .bar{height:1.1em;background:#36c;border-radius:3px}
 .pct{width:4.5em;font-variant-numeric:tabular-nums}
 #error{color:#b00}
 #explain{margin:.8em 0;display:none}
 #cam{max-width:100%;display:none}
 small{color:#666}
</style></head><body>
<h1>headstart: {{RUN}}</h1>
<p><small>classes: {{CLASSES}}</small></p>
<div id="drop">Drop an image here, or click to pick one
 <input id="file" type="file" accept="image/*" hidden></div>
<img id="preview" alt="the image sent">
<div id="error" role="alert"></div>
<div id="result" aria-live="polite"></div>
<button id="explain" type="button">Show where the model looked (Grad-CAM)</button>
<img id="cam" alt="Grad-CAM of the top class">
<p><small><a href="/docs">API</a> · <a href="/health">health</a></small></p>
<script>
const drop = document.getElementById("drop"), input = document.getElementById("file");
const result = document.getElementById("result"), error = document.getElementById("error");
const explainButton = document.getElementById("explain"), cam = document.getElementById("cam");
let last = null;
const keyHeaders = () => { const key = new URLSearchParams(location.hash.slice(1)).get("key");
  return key ? {"X-API-Key": key} : {}; };
explainButton.onclick = async () => {
  if (!last) return;
  const body = new FormData(); body.append("file", last, last.name);
  explainButton.disabled = true; explainButton.textContent = "Computing Grad-CAM…";
  const r = await fetch("/explain", {method: "POST", body, headers: keyHeaders()});
  explainButton.disabled = false; explainButton.textContent = "Show where the model looked (Grad-CAM)";
  if (!r.ok) { error.textContent = (await r.json()).error || ("error " + r.status); return; }
  cam.src = URL.createObjectURL(await r.blob()); cam.style.display = "block";
};
drop.onclick = () => input.click();
input.onchange = () => input.files.length && send(input.files[0]);
drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = e => { e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]); };
async function send(file) {
  error.textContent = ""; result.textContent = "…"; last = file;
  cam.style.display = "none"; explainButton.style.display = "none";
  const preview = document.getElementById("preview");
  preview.src = URL.createObjectURL(file); preview.style.display = "block";
  const body = new FormData(); body.append("file", file, file.name);
  const r = await fetch("/predict?top=5", {method: "POST", body, headers: keyHeaders()});
  const data = await r.json();
  result.textContent = "";
  if (!r.ok) { error.textContent = data.error || ("error " + r.status); return; }
  for (const p of data[0].predictions) {
    const row = document.createElement("div"); row.className = "row prediction";
    const pct = (100 * p.probability).toFixed(1);
    row.innerHTML = '<span class="label"></span><span class="bar"></span><span class="pct"></span>';
    row.children[0].textContent = p.label; row.children[1].style.width = (3 * pct) + "px";
    row.children[2].textContent = pct + " %";
    result.appendChild(row);
  }
  explainButton.style.display = "inline-block";
}
</script></body></html>
"""
