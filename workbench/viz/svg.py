"""SVG sanitising by allowlist: the one function the report and the widgets inline SVG through.

The SVG is parsed with ``defusedxml`` (no entity expansion, no external resources) and written
out again by a small serializer that keeps only allowlisted SVG elements and attributes:
no scripts, event handlers, ``<animate>``/``<set>``, foreign content, images, external links,
or ``<style>`` blocks using ``@import``/``url()``. Every id is prefixed so several figures can
share a page. Text (a hostile node name, say) can only ever come out as character data.

No namespace is registered anywhere: the serializer writes SVG names itself.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

from markupsafe import Markup

from ..errors import InputError

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_NS = "http://www.w3.org/XML/1998/namespace"

#: SVG elements kept (everything else is dropped with its content)
ELEMENTS = frozenset(
    [
        "svg",
        "g",
        "defs",
        "symbol",
        "use",
        "path",
        "rect",
        "circle",
        "ellipse",
        "line",
        "polyline",
        "polygon",
        "text",
        "tspan",
        "textPath",
        "title",
        "desc",
        "clipPath",
        "mask",
        "marker",
        "pattern",
        "linearGradient",
        "radialGradient",
        "stop",
        "a",
        "style",
        "switch",
    ]
)

#: presentation and geometry attributes kept (``href`` only when it points inside the figure)
ATTRIBUTES = frozenset(
    [
        "id",
        "class",
        "style",
        "transform",
        "x",
        "y",
        "x1",
        "y1",
        "x2",
        "y2",
        "cx",
        "cy",
        "r",
        "rx",
        "ry",
        "fx",
        "fy",
        "width",
        "height",
        "d",
        "points",
        "viewBox",
        "preserveAspectRatio",
        "version",
        "fill",
        "fill-opacity",
        "fill-rule",
        "stroke",
        "stroke-width",
        "stroke-opacity",
        "stroke-dasharray",
        "stroke-dashoffset",
        "stroke-linecap",
        "stroke-linejoin",
        "stroke-miterlimit",
        "opacity",
        "visibility",
        "display",
        "color",
        "font-family",
        "font-size",
        "font-weight",
        "font-style",
        "font-variant",
        "font-stretch",
        "text-anchor",
        "dominant-baseline",
        "alignment-baseline",
        "baseline-shift",
        "text-decoration",
        "letter-spacing",
        "word-spacing",
        "dx",
        "dy",
        "rotate",
        "textLength",
        "lengthAdjust",
        "clip-path",
        "clip-rule",
        "clipPathUnits",
        "mask",
        "maskUnits",
        "maskContentUnits",
        "marker-start",
        "marker-mid",
        "marker-end",
        "markerWidth",
        "markerHeight",
        "markerUnits",
        "refX",
        "refY",
        "orient",
        "offset",
        "stop-color",
        "stop-opacity",
        "gradientUnits",
        "gradientTransform",
        "spreadMethod",
        "patternUnits",
        "patternContentUnits",
        "patternTransform",
        "vector-effect",
        "shape-rendering",
        "text-rendering",
        "image-rendering",
        "paint-order",
        "href",
        "title",
        "space",
        "type",
    ]
)

#: CSS that could fetch, run or hide something (``@import``, ``url(`` to anything not ``#``,
#: IE ``expression``, escapes that could spell either, ``javascript:``)
_BAD_CSS = re.compile(r"@|\\|expression\s*\(|javascript:|url\(\s*['\"]?(?!#)", re.IGNORECASE)
_URL_REF = re.compile(r"url\(\s*#([^)\s]+)\s*\)")


def _split(name: str) -> tuple[str, str]:
    """``{ns}local`` → (ns, local)."""
    if name.startswith("{"):
        ns, _, local = name[1:].partition("}")
        return ns, local
    return "", name


def _parse(svg: str | bytes) -> ET.Element:
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    text = svg.decode("utf-8") if isinstance(svg, bytes) else str(svg)
    start = text.find("<svg")
    if start < 0:
        raise InputError("not an SVG document (no <svg> element); render with format='svg'")
    try:  # the prologue (and any DOCTYPE) is cut off: nothing can be declared
        return DET.fromstring(text[start:])
    except (ET.ParseError, DefusedXmlException) as e:
        raise InputError(f"cannot embed SVG: it is not well-formed, safe XML ({e})") from e


class _Writer:
    """Serializes the allowlisted part of a parsed SVG with prefixed ids."""

    def __init__(self, ids: dict[str, str]):
        self.ids = ids
        self.out: list[str] = []

    def css(self, value: str) -> str | None:
        """CSS with local ``url(#id)`` references re-pointed; None when it is not safe."""
        if _BAD_CSS.search(value) or "<" in value:
            return None
        return _URL_REF.sub(lambda m: f"url(#{self.ids.get(m.group(1), m.group(1))})", value)

    def attribute(self, key: str, value: str) -> tuple[str, str] | None:
        ns, local = _split(key)
        if local not in ATTRIBUTES or ns not in ("", XLINK_NS, XML_NS):
            return None
        if ns == XML_NS and local != "space":
            return None
        name = {XLINK_NS: "xlink:", XML_NS: "xml:"}.get(ns, "") + local
        if local == "href":
            target = value.strip()
            if not target.startswith("#") or target[1:] not in self.ids:
                return None  # GraphViz URL= attributes or anything external: never a live link
            return name, "#" + self.ids[target[1:]]
        if local == "id":
            return name, self.ids[value]
        if local == "type" and value.strip().lower() != "text/css":
            return None
        clean = self.css(value)
        return None if clean is None else (name, clean)

    def element(self, el: ET.Element, root: bool = False) -> None:
        if not isinstance(el.tag, str):
            return  # comments, processing instructions
        ns, local = _split(el.tag)
        if ns not in ("", SVG_NS) or local not in ELEMENTS:
            return
        text = el.text or ""
        if local == "style":
            if any(True for _ in el) or (clean := self.css(text)) is None:
                return
            text = clean
        attrs = [a for k, v in el.attrib.items() if (a := self.attribute(k, v)) is not None]
        if root:
            attrs = [a for a in attrs if a[0] not in ("xmlns", "xmlns:xlink")]
            attrs[:0] = [("xmlns", SVG_NS), ("xmlns:xlink", XLINK_NS)]
        rendered = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in attrs)
        self.out.append(f"<{local}{rendered}>{html.escape(text, quote=False)}")
        for child in el:
            self.element(child)
            if child.tail and isinstance(child.tag, str):
                self.out.append(html.escape(child.tail, quote=False))
        self.out.append(f"</{local}>")


def sanitize_svg(svg: str | bytes, prefix: str = "f") -> Markup:
    """SVG markup safe to inline in HTML (report pages, widget outputs, notebooks).

    Keeps only allowlisted SVG elements and attributes, drops ``href``s that leave the figure
    and CSS that could load anything, prefixes every id with ``prefix``.
    """
    root = _parse(svg)
    if _split(root.tag)[1] != "svg":
        raise InputError("not an SVG document (the root element is not <svg>)")
    safe_prefix = re.sub(r"[^A-Za-z0-9_-]", "_", prefix) or "f"
    ids = {
        el.attrib["id"]: f"{safe_prefix}-{re.sub(r'[^A-Za-z0-9_.:-]', '_', el.attrib['id'])}"
        for el in root.iter()
        if "id" in el.attrib
    }
    writer = _Writer(ids)
    writer.element(root, root=True)
    return Markup("".join(writer.out))
