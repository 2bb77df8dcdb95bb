"""Contact sheets: a query and its nearest gallery images in one picture, each tile captioned.

    sheet = contact_sheet(query_rgb, [(rgb_or_None, ["cat 0.93", "cats/12.jpg"]), ...], query_box=box)
    save_image("sheet.jpg", sheet)
"""
import numpy as np
from PIL import Image, ImageDraw

from ..utils.image import as_rgb_uint8
from ..visualize import drawable, label_colour, load_font

QUERY_COLOUR = (40, 40, 40)
MISSING = (200, 200, 200)


def fit_tile(rgb, tile):
    """`rgb` scaled to fit a `tile` x `tile` square (aspect kept), centred on white."""
    canvas = Image.new("RGB", (tile, tile), (255, 255, 255))
    if rgb is None:
        canvas.paste(MISSING, (0, 0, tile, tile))
        return canvas
    im = Image.fromarray(as_rgb_uint8(rgb))
    im.thumbnail((tile, tile), Image.Resampling.BILINEAR if hasattr(Image, "Resampling") else Image.BILINEAR)
    if max(im.size) < tile:  # small images are enlarged too, so every tile reads at the same scale
        s = tile / float(max(im.size))
        im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))))
    canvas.paste(im, ((tile - im.size[0]) // 2, (tile - im.size[1]) // 2))
    return canvas


def _fit_text(draw, text, font, width):
    """`text` on one line (visualize.drawable: a newline or a control character escaped), its start cut to
    fit `width`."""
    text = drawable(text)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]  # keep the end: the file name
    return "…" + text


def contact_sheet(query, results, tile=160, columns=5, query_box=None, font_path=None, title=None):
    """RGB uint8 sheet: the query first (framed dark, its main-object box drawn when given), then one
    tile per result, each with its caption lines under it and a frame in its label's colour.

    `results`: [(rgb or None when the file is missing, [caption lines], label or None)]."""
    query = as_rgb_uint8(query)
    font = load_font(font_path, max(10, tile // 13))
    line_h = max(12, tile // 11)
    lines = max([len(c) for _, c, _ in results] + [2])
    cell_w, cell_h = tile + 8, tile + 8 + lines * line_h + 4
    n = 1 + len(results)
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    top = line_h + 6 if title else 0
    sheet = Image.new("RGB", (columns * cell_w + 4, rows * cell_h + 4 + top), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 3), _fit_text(draw, title, font, sheet.size[0] - 12), fill=(0, 0, 0), font=font)

    q = query
    if query_box is not None:
        from ..visualize import draw_results
        q = draw_results(query, [{"bbox": query_box, "rec_docs": "main object", "rec_scores": None}], font_path)
    cells = [(q, ["query"], None, QUERY_COLOUR)] + [(rgb, cap, lab, label_colour(lab)) for rgb, cap, lab in results]
    for i, (rgb, caption, label, colour) in enumerate(cells):
        x, y = 4 + (i % columns) * cell_w, 4 + top + (i // columns) * cell_h
        draw.rectangle([x, y, x + tile + 3, y + tile + 3], outline=colour, width=3)
        sheet.paste(fit_tile(rgb, tile), (x + 2, y + 2))
        if rgb is None:
            draw.text((x + 8, y + tile // 2 - line_h // 2), "missing", fill=(90, 90, 90), font=font)
        for j, text in enumerate(caption):
            draw.text((x + 2, y + tile + 6 + j * line_h), _fit_text(draw, str(text), font, tile + 2),
                      fill=(0, 0, 0), font=font)
    return np.asarray(sheet, dtype=np.uint8).copy()


def text_card(text, size=320, font_path=None):
    """RGB uint8 `size` x `size`: a text query written on a light card (the query tile of a text search's sheet),
    wrapped to its width, cut with "…" where it does not fit."""
    from ..visualize import load_font

    card = Image.new("RGB", (size, size), (245, 245, 235))
    draw = ImageDraw.Draw(card)
    font = load_font(font_path, max(12, size // 12))
    text, lines, line = drawable(text), [], ""
    for ch in text:  # by character: Chinese has no spaces to break at
        if draw.textlength(line + ch, font=font) > size - 16:
            lines.append(line)
            line = ch.lstrip()
        else:
            line += ch
    lines.append(line)
    step = max(14, size // 10)
    fit = max(1, (size - 16) // step)
    if len(lines) > fit:
        lines = lines[:fit - 1] + [_fit_text(draw, lines[fit - 1] + "…", font, size - 16)]
    for i, ln in enumerate(lines):
        draw.text((8, 8 + i * step), ln, fill=(20, 20, 20), font=font)
    return np.asarray(card, dtype=np.uint8).copy()
