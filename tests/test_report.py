"""HTML report: content, escaping, sanitized SVG, CLI verb, and the page in headless Chromium."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

import workbench as wb
from workbench.cli import main
from workbench.cpu import cpu_info as cpu_info_at
from workbench.html_report import cpu_info, render_report, safe_svg

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


# --------------------------------------------------------------------------- browser harness

#: text-bearing elements whose content is wider than their box (clipped or spilling), and any
#: visible element reaching past the right edge of the window
OVERFLOW_JS = """
(scope) => {
  const root = document.querySelector(scope) || document.body;
  const width = document.documentElement.clientWidth;
  const bad = [];
  const sel = "td, th, p, li, dd, dt, h1, h2, h3, figcaption, summary, caption, label, " +
              "span, a, button, .table-wrap, figure, svg, .widget-html-content";
  for (const el of root.querySelectorAll(sel)) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const text = (el.textContent || "").trim().slice(0, 50);
    const boxed = el.clientWidth > 0 && el.tagName.toLowerCase() !== "svg";
    if (boxed && el.scrollWidth > el.clientWidth + 1)
      bad.push(`${el.tagName}.${el.className} scroll ${el.scrollWidth} > ${el.clientWidth}: ${text}`);
    if (box.right > width + 1)
      bad.push(`${el.tagName}.${el.className} right edge ${Math.round(box.right)} > ${width}: ${text}`);
  }
  if (document.documentElement.scrollWidth > width)
    bad.push(`page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
  return bad;
}
"""


#: GraphViz nodes whose text reaches outside their shape (legend boxes, nodes, notes)
TEXT_OUTSIDE_JS = """
(scope) => {
  const bad = [];
  for (const g of document.querySelectorAll(scope + " svg g.node")) {
    const shape = g.querySelector("polygon, path, ellipse");
    const texts = Array.from(g.querySelectorAll("text"));
    if (!shape || !texts.length) continue;
    const s = shape.getBBox();
    for (const t of texts) {
      const b = t.getBBox();
      if (b.x < s.x - 1 || b.x + b.width > s.x + s.width + 1)
        bad.push(`${t.textContent}: text ${b.x.toFixed(1)}+${b.width.toFixed(1)} ` +
                 `outside ${s.x.toFixed(1)}+${s.width.toFixed(1)}`);
    }
  }
  return bad;
}
"""


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    """Screenshots at 1280×800, kept as test artifacts in pytest's temporary folder."""
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


class Visit:
    """A page opened on a report (or any URL), recording console errors, dialogs and requests.

    ``home`` is the prefix of the URLs the page may load (default: the report file itself).
    """

    def __init__(self, browser, target: Path | str, home: str | None = None, size=(1280, 800)):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = target.resolve().as_uri() if isinstance(target, Path) else target
        self.home = home or self.url
        self.page.goto(self.url, wait_until="load")

    def overflowing(self, scope: str = "body") -> list[str]:
        """Elements under ``scope`` whose text overflows their box, or that stick out of the
        page width (measured in the DOM: scroll sizes and bounding boxes)."""
        return self.page.evaluate(OVERFLOW_JS, scope)

    def check_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert self.page.evaluate("window.__pwned") is None
        allowed = (self.home, "data:", "blob:")
        foreign = [u for u in self.requests if not u.startswith(allowed)]
        assert foreign == [], foreign


# --------------------------------------------------------------------------- pieces


def test_safe_svg_drops_active_content_and_prefixes_ids():
    hostile = (
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x "boom">]>'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'onload="alert(1)"><defs><clipPath id="c1"><rect width="1" height="1"/></clipPath></defs>'
        "<script>alert(2)</script><foreignObject><div>x</div></foreignObject>"
        '<a xlink:href="javascript:alert(3)"><text clip-path="url(#c1)">&lt;/script&gt;</text></a>'
        '<use xlink:href="#c1"/><image href="http://example.com/x.png"/></svg>'
    )
    out = str(safe_svg(hostile, "p"))
    assert "onload" not in out and "<script" not in out and "foreignObject" not in out
    assert "javascript:" not in out and "example.com" not in out and "ENTITY" not in out
    assert 'id="p-c1"' in out and "url(#p-c1)" in out and 'href="#p-c1"' in out
    assert "&lt;/script&gt;" in out  # text stays character data
    with pytest.raises(wb.InputError, match="not an SVG"):
        safe_svg("<html></html>", "p")


def test_cpu_info_reads_flags(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512_bf16 sse4_2\n")
    info = cpu_info_at(str(fake))
    assert info.model == "Test CPU 9000"
    assert info.key_flags == ("sse4_2", "avx2", "avx512_bf16")
    assert "fpu" in info.flags and info.has_vnni is False


def test_report_needs_something_and_rejects_unknown_types(tmp_path):
    with pytest.raises(wb.InputError, match="nothing to show"):
        wb.report(None, tmp_path / "r.html")
    with pytest.raises(wb.InputError, match="cannot show a set"):
        wb.report({1, 2}, tmp_path / "r.html")
    with pytest.raises(wb.InputError, match="directory"):
        wb.report(wb.inspect(wb.demo.demo_model_path("mlp")), tmp_path)
    assert not (tmp_path / "r.html").exists()


def test_report_shows_only_what_it_gets(demo_cnn):
    bench = wb.benchmark(demo_cnn, runs=10)
    text = render_report(bench, model=demo_cnn)
    ids = re.findall(r'<section id="([^"]+)"', text)
    assert ids == ["model", "bench", "environment"]
    assert "digits_cnn" in text and "Conv" in text
    # environment: versions and this machine's CPU flags from /proc/cpuinfo
    import onnxruntime

    assert onnxruntime.__version__ in text
    flags = cpu_info()["key_flags"]
    if flags:
        assert " ".join(flags) in text
    assert "<script>" in text and "http://" not in text.replace("http://www.w3.org", "")


# --------------------------------------------------------------------------- in the browser


@pytest.mark.browser
def test_hostile_names_render_as_text_in_chromium(browser, tmodels, tmp_path, shots):
    model = tmodels.hostile_names()
    aff = wb.affinity(model, ["npu-sim", "cpu"])
    part = wb.partition(model, aff)
    prof = part.profile(next(wb.random_dataset(model, n=1).feeds()), runs=3)
    path = wb.report(
        wb.inspect(model),
        tmp_path / "hostile.html",
        model=model,
        affinity=aff,
        partitioned=part,
        profile=prof,
    )
    raw = path.read_text()
    assert tmodels.HOSTILE not in raw and tmodels.HOSTILE_IMG not in raw
    v = Visit(browser, path)
    body = v.page.inner_text("body")
    # the strings are shown literally, as text: metadata, graph name, node names in tables
    assert tmodels.HOSTILE in body and tmodels.HOSTILE_IMG in body
    placed = v.page.locator("#affinity tbody td.col-node").all_inner_texts()
    assert tmodels.HOSTILE in placed and 'fc2 "quoted" & <b>bold</b>' in placed
    # ... and inside the inline SVG renders, as SVG text
    svg_text = " ".join(v.page.locator("#affinity svg text").all_text_contents())
    assert "</script>" in svg_text
    assert v.page.locator("img").count() == 0 and v.page.locator("b").count() == 0
    assert v.page.locator("script").count() == 1  # only the report's own sorter
    v.page.screenshot(path=str(shots / "report_hostile.png"), full_page=True)
    v.check_clean()


@pytest.mark.browser
def test_every_section_in_chromium(browser, study, demo_cnn, tmp_path, shots):
    data = wb.demo.demo_dataset("test", n=60)
    mixed = wb.auto_mixed_precision(demo_cnn, data, validation_fn=wb.demo.accuracy, max_drop=0.02)
    ac = wb.quantize_with_accuracy_control(demo_cnn, data, data, wb.demo.accuracy, max_drop=0.02)
    f16 = wb.convert_float16(demo_cnn, report=True)
    aff = wb.affinity(demo_cnn, ["gpu-sim", "cpu"])
    part = wb.partition(demo_cnn, aff)
    prof = part.profile(next(data.feeds()), runs=3)
    cap = wb.query_model(demo_cnn, "npu-sim")
    path = wb.report(
        [study, f16, cap],
        tmp_path / "all.html",
        model=demo_cnn,
        mixed=mixed,
        accuracy_control=ac,
        affinity=aff,
        partitioned=part,
        profile=prof,
    )
    ids = re.findall(r'<section id="([^"]+)"', path.read_text())
    assert ids == [
        "recommendation", "model", "tradeoff", "study", "hints", "pareto", "float16", "mixed",
        "accuracy-control", "capability", "affinity", "subgraphs", "profile", "environment",
    ]  # fmt: skip
    v = Visit(browser, path)
    assert v.overflowing() == []
    # GraphViz text (legend boxes included) stays inside its shapes as the browser draws it
    for section in ("#affinity", "#subgraphs"):
        assert v.page.evaluate(TEXT_OUTSIDE_JS, section) == [], section
    assert "dashed border: simulated device" in v.page.inner_text("#affinity")
    assert v.page.locator("nav a").count() == len(ids)
    for section in ("affinity", "subgraphs", "profile"):
        assert v.page.locator(f"#{section} figure svg").count() == 1, section
    if mixed.sensitivity:
        assert v.page.locator("#mixed figure svg").count() == 1
    assert "(simulated)" in v.page.inner_text("#subgraphs")
    assert f"{prof.total_ms:.3f} ms end to end" in v.page.inner_text("#profile")
    # svg ids were prefixed per figure: no duplicates across the page
    ids_in_page = v.page.evaluate("Array.from(document.querySelectorAll('[id]')).map(e => e.id)")
    assert len(ids_in_page) == len(set(ids_in_page))
    v.page.screenshot(path=str(shots / "report_all_sections.png"), full_page=True)
    v.check_clean()


@pytest.mark.browser
def test_report_tables_sort_and_print(browser, demo_cnn, tmp_path, shots):
    benches = [wb.benchmark(demo_cnn, runs=n, hint=h) for n, h in ((5, "accuracy"), (8, None))]
    path = wb.report(benches, tmp_path / "bench.html", model=demo_cnn)
    v = Visit(browser, path)
    runs = v.page.locator("#bench tbody tr td:nth-child(8)")
    assert runs.all_inner_texts() == ["5", "8"]
    header = v.page.locator("#bench th", has_text="runs")
    header.click()
    header.click()  # second click: descending
    assert runs.all_inner_texts() == ["8", "5"]
    assert header.get_attribute("aria-sort") == "descending"
    v.page.emulate_media(media="print")
    assert v.page.locator("nav").is_hidden()
    pdf = v.page.pdf(path=str(shots / "report_print.pdf"), format="A4")
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    v.check_clean()


@pytest.fixture(scope="module")
def study(demo_cnn):
    """A small real sweep of the demo CNN (f32/f16/int8 × two hints), ~2 s."""
    data = wb.demo.demo_dataset("test", n=120)
    return wb.explore(
        demo_cnn,
        data,
        wb.demo.accuracy,
        variants=("f32", "f16", "int8"),
        hints=("performance", "accuracy"),
        min_time=0.05,
        rounds=2,
    )


@pytest.mark.browser
def test_study_report_in_chromium(browser, study, demo_cnn, tmp_path, shots):
    path = wb.report(study, tmp_path / "study.html", model=demo_cnn)
    text = path.read_text()
    ids = re.findall(r'<section id="([^"]+)"', text)
    # the verdict first, then the model, plots, records, what the hints mean, the front
    assert ids == [
        "recommendation", "model", "tradeoff", "study", "hints", "pareto", "environment",
    ]  # fmt: skip
    v = Visit(browser, path)
    rec = study.recommend()
    verdict = v.page.inner_text("#recommendation")
    assert rec.record is not None and f"Ship {rec.record.label}." in verdict
    assert v.page.locator("#recommendation tbody tr").count() == len(rec.reasons)
    rows = v.page.locator("#study tbody tr")
    assert rows.count() == len(study.records)
    # one tradeoff plot per hint plus all together, drawn as inline SVG with text
    hints = list(dict.fromkeys(h for r in study.records if r.ok for h in r.hints))
    figs = v.page.locator("#tradeoff figure svg")
    assert figs.count() == 1 + len(hints)
    assert all(box["width"] > 200 for box in (f.bounding_box() for f in figs.all()))
    captions = v.page.locator("#tradeoff figcaption").all_inner_texts()
    assert captions == ["all hints together"] + [f"hint {h}" for h in hints]
    front = study.pareto()
    assert v.page.locator("#pareto tbody tr").count() == len(front)
    assert v.page.locator("#study tr.pareto").count() == len(front)
    mismatched = [r for r in study.records if not r.error and not r.honoured]
    assert v.page.locator("#study tr.mismatch").count() == len(mismatched)
    # a glossary entry for every hint of the study
    terms = v.page.locator("#hints dt").all_inner_texts()
    assert terms == hints and "performance" in v.page.inner_text("#hints dd >> nth=0").lower()
    # notes are short; their details open with one click
    summaries = v.page.locator("#study td.col-notes details summary")
    if summaries.count():
        detail = v.page.locator("#study td.col-notes details .detail").first
        assert not detail.is_visible()
        summaries.first.click()
        assert detail.is_visible() and detail.inner_text().strip()
    assert all(len(t) <= 90 for t in summaries.all_inner_texts())
    # everything fits a 1280 px window: no text wider than its box, no sideways scrolling
    assert v.overflowing() == []
    v.page.screenshot(path=str(shots / "report_study_1280x800.png"))
    v.page.screenshot(path=str(shots / "report_study_full.png"), full_page=True)
    v.check_clean()


def test_report_groups_records_by_host(study):
    hosts = ("lab-a", "lab-b")
    records = [
        replace(r, host={**r.host, "name": hosts[k % 2]}) for k, r in enumerate(study.records)
    ]
    merged = replace(study, records=tuple(records))
    text = render_report(merged, environment=False)
    assert text.count("<h3>Measured on ") == 2
    for host in hosts:
        assert f"<h3>Measured on {host}</h3>" in text
    # one table per host, every record once
    section = text[text.index('<section id="study"') :]
    section = section[: section.index("</section>")]
    assert section.count("<tbody>") == 2 and section.count("<tr") == len(records) + 2


def test_hint_glossary_explains_every_part():
    from workbench.html_report import hint_meaning

    text = hint_meaning("performance/f16")
    assert "performance" in text and "float16" in text
    assert "throughput" in hint_meaning("performance/throughput")
    assert "custom" in hint_meaning("zzz")


def test_cli_report_from_saved_results(tmp_path, capsys, study, demo_cnn):
    saved = study.save(tmp_path / "study.json")
    bench = tmp_path / "bench.json"
    wb.benchmark(demo_cnn, runs=5).to_json(bench)
    out = tmp_path / "r.html"
    model = str(wb.demo.demo_model_path("cnn"))
    assert main(["report", str(saved), str(bench), "-o", str(out), "--model", model]) == 0
    assert str(out) in capsys.readouterr().out
    ids = re.findall(r'<section id="([^"]+)"', out.read_text())
    assert ids == ["recommendation", "model", "tradeoff", "study", "hints", "pareto", "bench",
                   "environment"]  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert main(["report", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and len(err.strip().splitlines()) == 1
