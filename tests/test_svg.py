"""SVG by allowlist: hostile SVG and hostile names go through the one sanitizer used by the
report and the widgets, and come out inert (checked as parsed XML and in headless Chromium)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

import workbench as wb
from workbench.figures import ranking_plot
from workbench.html_report import figure_block, render_report
from workbench.viz.svg import sanitize_svg
from workbench.widgets._base import svg_html

SVG = "http://www.w3.org/2000/svg"

#: every trick we know of to run code or fetch something from inside an SVG
HOSTILE_SVG = (
    '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x "boom">]>'
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'onload="window.__pwned=1" width="200" height="100">'
    '<defs><clipPath id="c1"><rect width="10" height="10"/></clipPath>'
    '<linearGradient id="g1"><stop offset="0" stop-color="red"/></linearGradient></defs>'
    "<script>window.__pwned=2</script>"
    '<style>@import url("http://example.com/x.css"); rect { fill: blue }</style>'
    "<style>rect { stroke: url(http://example.com/p.svg#x) }</style>"
    "<style>text { fill: #333 }</style>"
    '<rect width="5" height="5" onclick="window.__pwned=3" onmouseover="alert(1)"/>'
    '<animate attributeName="href" to="javascript:alert(4)" begin="0s"/>'
    '<set attributeName="onmouseover" to="alert(5)"/>'
    '<a xlink:href="javascript:window.__pwned=6"><text x="1" y="20">link</text></a>'
    '<a href="https://example.com/"><text y="30">external</text></a>'
    '<use xlink:href="http://example.com/sprite.svg#icon"/>'
    '<use href="#c1"/>'
    '<image href="http://example.com/x.png" width="10" height="10"/>'
    '<foreignObject width="50" height="50"><iframe xmlns="http://www.w3.org/1999/xhtml" '
    'src="javascript:parent.__pwned=7"></iframe></foreignObject>'
    '<rect style="fill: url(http://example.com/f.svg#p)" width="3" height="3"/>'
    '<rect style="fill: url(#g1)" clip-path="url(#c1)" width="4" height="4"/>'
    '<text x="1" y="40">&lt;/svg&gt;&lt;script&gt;window.__pwned=8&lt;/script&gt;</text>'
    '<svg:foo xmlns:svg="urn:x" onload="x"/>'
    "</svg>"
)


def _parsed(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def _check_inert(markup: str) -> None:
    root = _parsed(markup)  # well-formed XML
    tags = {el.tag.rsplit("}", 1)[-1] for el in root.iter()}
    assert not tags & {"script", "animate", "set", "foreignObject", "iframe", "image", "foo"}
    for el in root.iter():
        for key, value in el.attrib.items():
            local = key.rsplit("}", 1)[-1]
            assert not local.lower().startswith("on"), (el.tag, key)
            if local == "href":
                assert value.startswith("#"), value
            assert "javascript:" not in value and "example.com" not in value
    styles = [el.text or "" for el in root.iter(f"{{{SVG}}}style")]
    assert styles and all("@" not in t and "example.com" not in t for t in styles)
    text = "".join(root.itertext())
    assert "</svg><script>window.__pwned=8</script>" in text  # character data, shown as text
    assert "boom" not in str(markup) and "ENTITY" not in str(markup)


def test_sanitizer_keeps_drawing_drops_everything_active():
    out = str(sanitize_svg(HOSTILE_SVG, "h"))
    _check_inert(out)
    root = _parsed(out)
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert ids == ["h-c1", "h-g1"]  # prefixed, so several figures can share a page
    assert 'clip-path="url(#h-c1)"' in out and "url(#h-g1)" in out
    assert 'xlink:href="#h-c1"' in out or 'href="#h-c1"' in out
    assert "rect { fill: blue }" not in out  # the whole @import block is dropped


def test_report_and_widgets_use_the_same_sanitizer():
    block = figure_block(HOSTILE_SVG, "hostile", "r")
    _check_inert(block.svg)
    widget = svg_html(HOSTILE_SVG, "w")
    inner = widget[widget.index("<svg") : widget.rindex("</svg>") + len("</svg>")]
    _check_inert(inner)
    assert str(sanitize_svg(HOSTILE_SVG, "w")) == inner


def test_not_svg_or_entities_are_refused():
    with pytest.raises(wb.InputError, match="not an SVG"):
        sanitize_svg("<html></html>")
    with pytest.raises(wb.InputError, match="not well-formed"):
        sanitize_svg('<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>')


def test_real_renders_survive_the_allowlist(tmodels):
    """matplotlib and GraphViz output keep their text and shapes (hostile names as text)."""
    model = tmodels.hostile_dot_names()
    aff = wb.affinity(model, ["npu-sim", "cpu"])
    graph = str(sanitize_svg(wb.render(wb.affinity_dot(model, aff)), "g"))
    root = _parsed(graph)
    assert len(list(root.iter(f"{{{SVG}}}polygon"))) > 3
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{{{SVG}}}text"))
    assert "devices" in texts and "</script>" in texts
    fig = ranking_plot({"<script>a</script>": 1.0, "b": 2.0}, "t", "x")
    plot = str(figure_block(fig, "c", "m").svg)
    assert "&lt;script&gt;a&lt;/script&gt;" in plot and "<script>" not in plot
    assert len(list(_parsed(plot).iter(f"{{{SVG}}}path"))) > 3


@pytest.mark.browser
def test_hostile_svg_is_inert_in_chromium_report_and_widget_html(tmp_path):
    from playwright.sync_api import sync_playwright
    from test_report import CHROMIUM_ARGS

    page_widget = tmp_path / "widget.html"
    page_widget.write_text(
        "<!DOCTYPE html><html><body>" + svg_html(HOSTILE_SVG, "w") + "</body></html>"
    )
    block = figure_block(HOSTILE_SVG, "hostile", "r")
    report_path = tmp_path / "report.html"
    report_path.write_text(
        render_report(wb.inspect(tmodels_model()), environment=False).replace(
            "</main>", f"<figure>{block.svg}</figure></main>"
        )
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for target in (page_widget, report_path):
            page = browser.new_page()
            dialogs, requests = [], []
            page.on("dialog", lambda d, seen=dialogs: (seen.append(d.message), d.dismiss()))
            page.on("request", lambda r, seen=requests: seen.append(r.url))
            page.goto(target.as_uri(), wait_until="load")
            page.mouse.move(2, 2)
            page.locator("svg rect").first.click(force=True)
            page.locator("svg text", has_text="link").click(force=True)
            page.wait_for_timeout(200)
            assert page.evaluate("window.__pwned") is None, target
            assert dialogs == [] and all(u.startswith("file:") for u in requests), requests
            page.close()
        browser.close()


def tmodels_model():
    import models

    return models.hostile_names()
