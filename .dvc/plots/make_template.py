"""Write ``.dvc/plots/template.html``: DVC's plots page with vega inline (no CDN).

Why: ``dvc plots show`` fills an HTML page whose ``{scripts}`` placeholder DVC replaces with
``<script src>`` tags to a CDN (vega 5.20.2, vega-lite 5.2.0, vega-embed 6.18.2); on a machine
without internet the page stays blank. This page has no ``{scripts}`` placeholder (DVC then adds
nothing) and carries the same three versions inline, so ``dvc_plots/index.html`` renders from
the file alone. ``.dvc/config`` names it (``plots.html_template``), so ``dvc plots show`` and
``dvc plots diff`` use it without a flag.

The JavaScript comes from the npm packages (``npm pack``, the only network step, run once by
whoever updates the versions; the page is committed). All three are BSD-3-Clause: their licence
texts are kept in the page, as the licence asks of a redistribution.

Usage: ``python .dvc/plots/make_template.py [folder with the three .tgz files]``.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"vega": ("5.20.2", "build/vega.min.js"),  # the versions dvc_render's page loads
            "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
            "vega-embed": ("6.18.2", "build/vega-embed.min.js")}
OUT = Path(__file__).with_name("template.html")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC plots</title>
<!--
{licences}
-->
{scripts}
{readable}
    <style>
        body {{ font-family: system-ui, sans-serif; margin: 24px; }}
        table {{ border-spacing: 15px; }}
        div.vega-embed {{ margin: 12px 24px 24px 0; }}
        p.empty {{ color: #666; font-size: 14px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


# DVC draws every plot at 300 x 300 px with 10-11 px text and the confusion matrix without its
# counts; its page calls vegaEmbed(id, spec) once per plot, so wrapping vegaEmbed reads better at
# a glance: wider line plots, larger text, the counts shown, no link to the online editor, and
# a line of text instead of a blank box for a plot that does not fit the task (header only).
READABLE = """<script>
(function () {
  var embed = window.vegaEmbed;
  var config = {axis: {labelFontSize: 13, titleFontSize: 14},
                legend: {labelFontSize: 13, titleFontSize: 13},
                header: {labelFontSize: 13, titleFontSize: 13}, title: {fontSize: 16},
                text: {fontSize: 15}};
  function readable(spec) {
    if (typeof spec.width === "number") { spec.width = 560; }
    if (typeof spec.height === "number") { spec.height = 360; }
    var x = spec.encoding && spec.encoding.x;
    if (x && x.field === "step") {  // solver steps are whole numbers
      x.axis = Object.assign({format: "d", tickMinStep: 1}, x.axis || {});
    }
    (spec.params || []).forEach(function (p) {
      if (p.name === "showValues") { p.value = true; }
    });
    return spec;
  }
  window.vegaEmbed = function (el, spec, opt) {
    if (!spec || Object.keys(spec).length === 0) {  // a plot file with its header only
      var note = document.createElement("p");
      note.className = "empty";
      note.textContent = el.replace("#", "") + ": no data for this model (header only)";
      document.querySelector(el).appendChild(note);
      return Promise.resolve(null);
    }
    var options = Object.assign({config: config, actions: {export: true, source: true,
                                 compiled: false, editor: false}}, opt || {});
    return embed(el, readable(spec), options);
  };
})();
</script>"""


def _member(tgz: Path, name: str) -> str:
    with tarfile.open(tgz) as tar:
        handle = tar.extractfile(f"package/{name}")
        assert handle is not None, (tgz, name)
        return handle.read().decode("utf-8")


def build(folder: Path) -> str:
    """The page from ``<package>-<version>.tgz`` files in ``folder``."""
    scripts, licences = [], []
    for package, (version, path) in PACKAGES.items():
        tgz = folder / f"{package}-{version}.tgz"
        code = _member(tgz, path)
        if "</script" in code.lower() or "{plot_divs}" in code or "{refresh_tag}" in code:
            raise SystemExit(f"{tgz}: the code cannot be inlined as it is")
        scripts.append(f"<script>/* {package} {version} */\n{code}\n</script>")
        text = _member(tgz, "LICENSE").replace("--", "- -")  # no "--" inside a comment
        licences.append(f"{package} {version} (BSD-3-Clause):\n{text.strip()}")
    return PAGE.format(licences="\n\n".join(licences), scripts="\n".join(scripts),
                       readable=READABLE)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(argv[0]) if argv else Path(tmp)
        if not argv:
            specs = [f"{p}@{v}" for p, (v, _) in PACKAGES.items()]
            subprocess.run(["npm", "pack", *specs], cwd=folder, check=True,
                           stdout=subprocess.DEVNULL)
        OUT.write_text(build(folder), encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
