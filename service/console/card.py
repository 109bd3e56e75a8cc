"""A version's ``MODEL_CARD.md`` as safe HTML, and the plots it shows.

Markdown is rendered by markdown-it-py in CommonMark mode with tables, raw HTML off (a
card's HTML is shown as text) and its own link validation (no ``javascript:`` links). An
image becomes ``<img data-file="name.png">`` only for a PNG lying directly in the version
folder; the page fetches it with the user's key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from service.errors import InvalidInput, NotFound

CARD_FILE = "MODEL_CARD.md"
MAX_CARD_BYTES = 1 << 20
MAX_PLOT_BYTES = 5 << 20
PLOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def plot_path(folder: Path, name: str) -> Path:
    """The plot ``name`` of the version in ``folder``, or the refusal: only a PNG's file
    name (no directory), a regular file directly in the folder, at most 5 MB."""
    if not PLOT_NAME.fullmatch(name):
        raise InvalidInput(f"{name[:100]!r} is not a plot name: plots are PNG files named "
                           "with letters, digits, '.', '_' and '-'.")
    path = folder / name
    try:
        real, inside = path.resolve(strict=True), folder.resolve(strict=True)
    except OSError:
        raise NotFound(f"This version has no file {name!r}.") from None
    if real.parent != inside or not real.is_file():
        raise NotFound(f"This version has no file {name!r}.")
    if real.stat().st_size > MAX_PLOT_BYTES:
        raise InvalidInput(f"{name!r} is larger than {MAX_PLOT_BYTES} bytes.")
    return real


def _renderer() -> Any:
    from markdown_it import MarkdownIt  # at the first card: a start-up never needs it

    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def image(renderer: Any, tokens: list[Any], idx: int, options: Any,
              env: dict[str, Any]) -> str:
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        alt = renderer.renderInlineAsText(token.children or [], options, env)
        if src in env["plots"]:
            return f'<img data-file="{src}" alt="{_attr(alt)}">'
        return f"<span class=\"missing-plot\">[{_attr(alt)}]</span>"

    md.add_render_rule("image", image)
    return md


_md: Any = None


def _attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def render(folder: Path) -> dict[str, Any]:
    """``{"html", "plots"}`` for the card in ``folder`` (404 when it has none)."""
    global _md
    path = folder / CARD_FILE
    if not path.is_file():
        raise NotFound("This version has no model card.")
    if path.stat().st_size > MAX_CARD_BYTES:
        raise InvalidInput(f"The model card is larger than {MAX_CARD_BYTES} bytes.")
    text = path.read_text(encoding="utf-8", errors="replace")
    plots = []
    for name in sorted({p.name for p in folder.glob("*.png")}):
        try:
            plot_path(folder, name)
        except (InvalidInput, NotFound):
            continue
        plots.append(name)
    if _md is None:
        _md = _renderer()
    html = _md.render(text, {"plots": set(plots)})
    return {"html": html, "plots": plots}
