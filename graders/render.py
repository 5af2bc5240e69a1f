"""Notebook cells → sanitised HTML fragments, shared by the HTML report and the PDF.

Everything in a submission is hostile until proven otherwise, so every fragment that leaves
this module is either escaped text or HTML that passed an allow-list sanitiser (nh3):

- markdown is parsed with raw HTML *disabled* (a ``<script>`` in a markdown cell is shown as
  text), math is converted to MathML at render time (latex2mathml, no CDN), links keep only
  ``http(s)``/``mailto``/``#`` targets, images only PNG/JPEG data URIs (a remote image becomes a
  text note, so the page never makes a request), and the result is cleaned by nh3;
- code is highlighted by pygments (which escapes it);
- text outputs are escaped and truncated with a visible note;
- images are embedded only when they decode as PNG or JPEG; SVG, HTML and JavaScript outputs
  are never rendered: their source is shown as escaped text with a label.

The fragments are :class:`markupsafe.Markup`, so Jinja templates with autoescaping print them
as they are and escape everything else.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping

import nh3
from jinja2 import Environment, PackageLoader, StrictUndefined
from latex2mathml.converter import convert as latex_to_mathml_raw
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup, escape
from mdit_py_plugins.amsmath import amsmath_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin
from nbformat import NotebookNode
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MTEXT = re.compile(r"<mtext>(.*?)</mtext>", re.S)
_GENERIC_REPR = re.compile(r"^<[\w.]+ (object|at 0x[0-9a-f]+)[^>]*>$|^<(IPython|matplotlib)\.[\w.]+ object>$")
IMAGE_MIMES = ("image/png", "image/jpeg")
_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
UNRENDERED_MIMES = ("text/html", "image/svg+xml", "application/javascript", "text/javascript")
"""Rich outputs that are never rendered live: their source is shown as escaped text."""


@dataclass(frozen=True)
class RenderLimits:
    """How much of a notebook is put on a page (the rest is dropped with a visible note)."""

    max_output_chars: int = 20_000
    """Characters of one text output shown (head and tail kept)."""
    max_output_lines: int = 200
    """Lines of one text output shown (head and tail kept)."""
    max_source_chars: int = 60_000
    """Characters of one cell's source shown."""
    max_image_bytes: int = 4_000_000
    """Largest decoded image embedded; larger ones are replaced by a note."""
    heading_shift: int = 2
    """Levels added to the notebook's own markdown headings, so they nest under the page's."""


REPORT_LIMITS = RenderLimits()
PDF_LIMITS = RenderLimits(max_output_chars=8_000, max_output_lines=120)


@dataclass(frozen=True)
class OutputFragment:
    """One cell output, ready for a template."""

    kind: str
    """``stream``, ``stderr``, ``text``, ``image``, ``rich`` (rendered markdown/LaTeX),
    ``source`` (an HTML/SVG/JavaScript output shown as text) or ``error``."""
    html: Markup
    label: str = ""
    """Shown above the output (e.g. "text/html output, shown as text: never run")."""
    note: str = ""
    """Shown below the output (e.g. what was truncated)."""


@dataclass(frozen=True)
class CellFragment:
    """One notebook cell: its rendered source and outputs."""

    index: int
    kind: str
    """``code``, ``markdown`` or ``raw``."""
    html: Markup
    outputs: tuple[OutputFragment, ...] = ()
    execution_count: int | None = None
    note: str = ""

    @property
    def number(self) -> int:
        """1-based, as students count cells."""
        return self.index + 1


# ---------------------------------------------------------------------------------------------
# Sanitising
# ---------------------------------------------------------------------------------------------
_HTML_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td", "span", "div",
    "sup", "sub",
}
_MATHML_TAGS = {
    "math", "mi", "mn", "mo", "ms", "mtext", "mspace", "mrow", "mfrac", "msqrt", "mroot", "msub", "msup",
    "msubsup", "munder", "mover", "munderover", "mtable", "mtr", "mtd", "mstyle", "menclose", "mpadded",
    "mphantom", "merror", "semantics",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "math": {"display"},
    "mo": {"stretchy", "fence", "form", "accent", "largeop", "movablelimits", "separator", "lspace", "rspace",
           "minsize", "maxsize", "symmetric"},
    "mi": {"mathvariant"},
    "mover": {"accent"},
    "munder": {"accentunder"},
    "munderover": {"accent", "accentunder"},
    "mfrac": {"linethickness"},
    "menclose": {"notation"},
    "mstyle": {"displaystyle", "scriptlevel"},
    "mspace": {"width", "height", "depth", "linebreak"},
    "mpadded": {"width", "height", "depth", "lspace", "voffset"},
    "mtable": {"columnalign", "rowalign", "rowspacing", "columnspacing", "displaystyle", "columnlines", "rowlines"},
    "mtr": {"columnalign", "rowalign"},
    "mtd": {"columnalign", "rowalign", "rowspan", "columnspan"},
}
_CLASSES = {
    "span": {"math-inline", "math-display", "tex-source", "md-note"},
    "div": {"math-display", "tex-source"},
}
_SAFE_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg);base64,[A-Za-z0-9+/]+=*$")


def _filter_attribute(tag: str, name: str, value: str) -> str | None:
    """Keep only links to http(s)/mailto/in-page anchors and images that are PNG/JPEG data URIs."""
    if tag == "a" and name == "href":
        return value if value.startswith(("http://", "https://", "mailto:", "#")) else None
    if tag == "img" and name == "src":
        return value if _SAFE_DATA_IMAGE.match(value) else None
    return value


def sanitize_html(fragment: str) -> Markup:
    """The allow-listed part of ``fragment``: markdown's tags, MathML, no scripts, styles or events."""
    cleaned = nh3.clean(
        fragment,
        tags=_HTML_TAGS | _MATHML_TAGS,
        attributes=_ATTRIBUTES,
        allowed_classes=_CLASSES,
        url_schemes={"http", "https", "mailto", "data"},
        attribute_filter=_filter_attribute,
        filter_style_properties={"text-align"},
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(cleaned)


# ---------------------------------------------------------------------------------------------
# Math and markdown
# ---------------------------------------------------------------------------------------------
def latex_to_mathml(tex: str, display: bool) -> str:
    """MathML for ``tex`` (unsanitised: callers sanitise), or the source as text when it does not parse."""
    source = re.sub(r"\\begin\{(aligned|alignat\*?|split|eqnarray\*?)\}", r"\\begin{align*}", tex)
    source = re.sub(r"\\end\{(aligned|alignat\*?|split|eqnarray\*?)\}", r"\\end{align*}", source)
    source = re.sub(r"\\begin\{(align|gather|equation|multline)\}", r"\\begin{\1*}", source)
    source = re.sub(r"\\end\{(align|gather|equation|multline)\}", r"\\end{\1*}", source)
    source = re.sub(r"\\(begin|end)\{(equation|gather|multline)\*\}", "", source)
    try:
        mathml = latex_to_mathml_raw(source, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 - latex2mathml raises many types on odd input; show the source instead
        tag = "div" if display else "span"
        return f'<{tag} class="tex-source">{html.escape(tex)}</{tag}>'
    # latex2mathml copies \text{...} verbatim into <mtext>: escape it so "a<b" stays text.
    return _MTEXT.sub(lambda m: "<mtext>" + html.escape(html.unescape(m.group(1))) + "</mtext>", mathml)


def _render_math_inline(self, tokens: list[Token], idx: int, options, env) -> str:  # noqa: ANN001
    return f'<span class="math-inline">{latex_to_mathml(tokens[idx].content, False)}</span>'


def _render_math_inline_double(self, tokens: list[Token], idx: int, options, env) -> str:  # noqa: ANN001
    return f'<span class="math-display">{latex_to_mathml(tokens[idx].content, True)}</span>'


def _render_math_block(self, tokens: list[Token], idx: int, options, env) -> str:  # noqa: ANN001
    return f'<div class="math-display">{latex_to_mathml(tokens[idx].content, True)}</div>\n'


def _render_image(self, tokens: list[Token], idx: int, options, env) -> str:  # noqa: ANN001
    """Embed a PNG/JPEG data URI or cell attachment; anything else (remote, SVG) becomes a note."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env)
    uri = _markdown_image_uri(src, env.get("attachments") or {})
    if uri is None:
        shown = src if len(src) < 120 else src[:117] + "…"
        return f'<span class="md-note">[image not embedded: {html.escape(alt or "no description")} ({html.escape(shown)})]</span>'
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _markdown_image_uri(src: str, attachments: Mapping[str, Any]) -> str | None:
    if src.startswith("attachment:"):
        bundle = attachments.get(src.removeprefix("attachment:"), {})
        for mime in IMAGE_MIMES:
            if mime in bundle:
                return image_data_uri(bundle[mime], mime)
        return None
    match = re.match(r"^data:(image/(?:png|jpeg));base64,(.*)$", src, re.S)
    return image_data_uri(match.group(2), match.group(1)) if match else None


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.use(dollarmath_plugin, allow_space=True, allow_digits=True, double_inline=True)
    md.use(amsmath_plugin)
    md.add_render_rule("math_inline", _render_math_inline)
    md.add_render_rule("math_inline_double", _render_math_inline_double)
    md.add_render_rule("math_block", _render_math_block)
    md.add_render_rule("math_block_label", _render_math_block)
    md.add_render_rule("amsmath", _render_math_block)
    md.add_render_rule("image", _render_image)
    return md


def render_markdown(text: str, attachments: Mapping[str, Any] | None = None, heading_shift: int = 0) -> Markup:
    """Sanitised HTML for a markdown cell: raw HTML shown as text, math as MathML, headings shifted."""
    md = _markdown()
    env = {"attachments": attachments or {}}
    tokens = md.parse(text, env)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, int(token.tag[1]) + heading_shift)}"
    return sanitize_html(md.renderer.render(tokens, md.options, env))


# ---------------------------------------------------------------------------------------------
# Code and outputs
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _formatter() -> HtmlFormatter:
    return HtmlFormatter(nowrap=True, classprefix="pg-")


def pygments_css() -> str:
    """The stylesheet for highlighted code (pygments' default colours)."""
    return _formatter().get_style_defs(".code")


def highlight_python(source: str) -> Markup:
    """Highlighted, escaped code (no <pre>: the template wraps it)."""
    return Markup(highlight(source, PythonLexer(), _formatter()))


def image_data_uri(data: Any, mime: str, limits: RenderLimits = REPORT_LIMITS) -> str | None:
    """A data URI for base64 ``data`` when it decodes to an image of type ``mime`` within the size limit."""
    if mime not in IMAGE_MIMES:
        return None
    text = "".join(data) if isinstance(data, list) else str(data)
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_MAGIC[mime]) or len(raw) > limits.max_image_bytes:
        return None
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def truncate_text(text: str, limits: RenderLimits) -> tuple[str, str]:
    """The text to show (head and tail) and a note saying what was left out, or ``""``."""
    lines = text.splitlines(keepends=True)
    if len(text) <= limits.max_output_chars and len(lines) <= limits.max_output_lines:
        return text, ""
    head_lines, tail_lines = lines[: limits.max_output_lines * 3 // 4], lines[-(limits.max_output_lines // 4):]
    head, tail = "".join(head_lines), "".join(tail_lines)
    head = head[: limits.max_output_chars * 3 // 4]
    tail = tail[-(limits.max_output_chars // 4):]
    left_out = len(text) - len(head) - len(tail)
    if left_out <= 0:
        return text, ""
    note = (f"output truncated: {left_out:,} of {len(text):,} characters ({len(lines):,} lines) not shown")
    return head + "\n…\n" + tail, note


def _clean_stream(text: str) -> str:
    """Strip ANSI colours and apply carriage returns (progress bars) as a terminal would."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    if "\r" not in text:
        return text
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def _joined(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _text_fragment(kind: str, text: str, limits: RenderLimits, label: str = "") -> OutputFragment:
    shown, note = truncate_text(text, limits)
    return OutputFragment(kind, escape(shown), label=label, note=note)


def render_output(output: Mapping[str, Any], limits: RenderLimits = REPORT_LIMITS) -> OutputFragment:
    """One output as a fragment: images embedded, text escaped, HTML/SVG/JS shown as source."""
    kind = output.get("output_type")
    if kind == "stream":
        name = "stderr" if output.get("name") == "stderr" else "stream"
        return _text_fragment(name, _clean_stream(_joined(output.get("text", ""))), limits)
    if kind == "error":
        trace = "\n".join(_ANSI.sub("", _joined(line)) for line in output.get("traceback", []))
        text = trace or f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
        return _text_fragment("error", text, limits)
    if kind in ("display_data", "execute_result"):
        return _rich_output(output.get("data", {}) or {}, limits)
    return _text_fragment("text", f"(an output of unknown type {str(kind)[:40]!r} is not shown)", limits)


def _rich_output(data: Mapping[str, Any], limits: RenderLimits) -> OutputFragment:
    for mime in IMAGE_MIMES:
        if mime in data:
            uri = image_data_uri(data[mime], mime, limits)
            if uri:
                return OutputFragment("image", Markup('<img src="{}" alt="figure">').format(uri))
            return OutputFragment("text", escape(f"({mime} output not shown: it is not a valid image or is larger "
                                                 f"than {limits.max_image_bytes // 1_000_000} MB)"))
    if "text/markdown" in data:
        return OutputFragment("rich", render_markdown(_joined(data["text/markdown"]), heading_shift=limits.heading_shift))
    if "text/latex" in data:
        return OutputFragment("rich", render_markdown(_joined(data["text/latex"]), heading_shift=limits.heading_shift))
    plain = _joined(data.get("text/plain", "")).strip()
    unrendered = [mime for mime in UNRENDERED_MIMES if mime in data]
    if unrendered and (not plain or _GENERIC_REPR.match(plain)):
        mime = unrendered[0]
        label = f"{mime} output, shown as text (the report never runs HTML or scripts)"
        return _text_fragment("source", _joined(data[mime]), limits, label=label)
    if plain:
        return _text_fragment("text", _ANSI.sub("", _joined(data["text/plain"])), limits)
    other = ", ".join(sorted(data)[:5]) or "empty"
    return OutputFragment("text", escape(f"(output of type {other} not shown)"))


def _merged_outputs(outputs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Consecutive stream outputs of the same name joined, as Jupyter shows them."""
    merged: list[Mapping[str, Any]] = []
    pieces: list[list[str]] = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None and previous.get("output_type") == "stream"
                and previous.get("name") == output.get("name")):
            pieces[-1].append(_joined(output.get("text", "")))
        else:
            merged.append(output)
            pieces.append([_joined(output.get("text", ""))] if output.get("output_type") == "stream" else [])
    return [{**o, "text": "".join(p)} if o.get("output_type") == "stream" else o for o, p in zip(merged, pieces)]


def render_cell(cell: NotebookNode, index: int, limits: RenderLimits = REPORT_LIMITS) -> CellFragment:
    """One cell: markdown rendered and sanitised, code highlighted, outputs rendered."""
    source = _joined(cell.get("source", ""))
    note = ""
    if len(source) > limits.max_source_chars:
        note = f"cell source truncated: {len(source) - limits.max_source_chars:,} characters not shown"
        source = source[: limits.max_source_chars]
    if cell.get("cell_type") == "markdown":
        body = render_markdown(source, cell.get("attachments"), limits.heading_shift)
        return CellFragment(index, "markdown", body, note=note)
    if cell.get("cell_type") == "code":
        outputs = tuple(render_output(o, limits) for o in _merged_outputs(cell.get("outputs", [])))
        count = cell.get("execution_count")
        return CellFragment(index, "code", highlight_python(source), outputs,
                            count if isinstance(count, int) else None, note)
    return CellFragment(index, "raw", escape(source), note=note)


def render_cells(notebook: NotebookNode, indices: Iterable[int], limits: RenderLimits = REPORT_LIMITS) -> list[CellFragment]:
    """The given cells of ``notebook`` (indices out of range are skipped)."""
    cells = notebook.get("cells", [])
    return [render_cell(cells[i], i, limits) for i in indices if 0 <= i < len(cells)]


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------
_BACKTICKS = re.compile(r"`([^`\n]{1,200})`")


def inline_code(text: object) -> Markup:
    """Grader messages as escaped text, with `backticked` names shown as code (escaping comes first)."""
    return Markup(_BACKTICKS.sub(r"<code>\1</code>", str(escape("" if text is None else text))))


@lru_cache(maxsize=1)
def template_environment() -> Environment:
    """Jinja with autoescaping on for every template: anything not already Markup is escaped."""
    env = Environment(loader=PackageLoader("graders", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals["pygments_css"] = pygments_css
    env.filters["ticks"] = inline_code
    return env
