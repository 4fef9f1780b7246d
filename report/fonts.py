"""Noto Sans CJK (Debian `fonts-noto-cjk`) for matplotlib: subset, as TrueType, embedded.

Debian ships Noto Sans CJK as a TrueType *collection* of CFF (PostScript-outline) faces.
matplotlib embeds such faces in a PDF as CID TrueType fonts holding CFF data, which
viewers flag ("Mismatch between font type and embedded font file") and which is known to
break some readers (matplotlib issues #2869, #20870); and subsetting the 19 MB collection
costs ~6 s per face per PDF. So each report first cuts the Simplified Chinese face down to
the characters it prints and converts the outlines to quadratic TrueType curves (fontTools'
cu2qu, max error 1 unit of the 1000-unit em), then gives matplotlib that small font. The
PDF embeds it as Type 42 (CID TrueType) with a ToUnicode map: text stays searchable.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from report.errors import RenderFailed

#: where Debian's fonts-noto-cjk puts the regular sans faces (a TrueType collection)
DEBIAN_PATH = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
#: the face for Simplified Chinese glyph forms inside the collection
FACE = "Noto Sans CJK SC"
#: always in the subset: ASCII and Latin-1 (µ, ³, ·) plus the punctuation of the labels
BASE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F)) + "".join(
    chr(c) for c in range(0xA0, 0x100)) + "—…–−•，。；：（）、“”％"


def find_cjk_font() -> Path:
    """The Noto Sans CJK file: fontconfig's answer, else Debian's path; RenderFailed if none."""
    if shutil.which("fc-match"):
        out = subprocess.run(["fc-match", "-f", "%{file}", f"{FACE}:style=Regular"],
                             capture_output=True, text=True, check=False).stdout.strip()
        if out and "NotoSansCJK" in out and Path(out).is_file():
            return Path(out)
    if DEBIAN_PATH.is_file():
        return DEBIAN_PATH
    raise RenderFailed("Noto Sans CJK is not installed (Debian package fonts-noto-cjk); "
                       "Chinese text cannot be drawn")


@cache
def _face_number(path: Path) -> int:
    from fontTools.ttLib import TTFont

    if path.suffix.lower() not in (".ttc", ".otc"):
        return 0
    for i in range(16):
        try:
            name = TTFont(str(path), fontNumber=i, lazy=True)["name"].getDebugName(1)
        except Exception:  # past the last face
            break
        if name == FACE:
            return i
    return 0


@cache
def _workdir() -> Path:
    """Where cut fonts are kept between runs (the same county prints the same characters
    most days, so the ~2 s cut is usually skipped): $CACHE_DIRECTORY (systemd's
    CacheDirectory=), else $XDG_CACHE_HOME or ~/.cache, else a temp dir."""
    for base in (os.environ.get("CACHE_DIRECTORY"), os.environ.get("XDG_CACHE_HOME"),
                 str(Path.home() / ".cache")):
        if not base:
            continue
        d = Path(base.split(":")[0]) / "airgrid-report-fonts"
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
            return d
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="airgrid-report-fonts-"))


@cache
def subset_font(chars: str) -> tuple[Path, str]:
    """A TrueType font holding `chars` (and the base set): its file and family name."""
    from fontTools import subset
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable

    src = find_cjk_font()
    text = "".join(sorted(set(BASE_CHARS + chars)))
    st = src.stat()
    key = f"{src}|{st.st_size}|{st.st_mtime_ns}|{text}"  # a new font package: a new cut
    tag = hashlib.sha1(key.encode()).hexdigest()[:12]
    family = f"Noto Sans CJK SC {tag}"
    out = _workdir() / f"NotoSansCJKsc-{tag}.ttf"
    if out.is_file():
        return out, family
    opts = subset.Options()
    opts.font_number = _face_number(src)
    opts.layout_features = ["kern", "palt"]
    opts.name_IDs = ["*"]
    opts.hinting = False
    opts.notdef_outline = True
    try:
        font = subset.load_font(str(src), opts)
        sub = subset.Subsetter(opts)
        sub.populate(text=text)
        sub.subset(font)
        # CFF → glyf (the procedure of fontTools' otf2ttf snippet)
        order = font.getGlyphOrder()
        glyphs = font.getGlyphSet()
        glyf = newTable("glyf")
        glyf.glyphOrder = order
        glyf.glyphs = {}
        for name in order:
            pen = TTGlyphPen(glyphs)
            glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
            glyf[name] = pen.glyph()
        for name in order:
            glyf[name].recalcBounds(glyf)
        font["loca"] = newTable("loca")
        font["glyf"] = glyf
        for cff in ("CFF ", "VORG"):
            if cff in font:
                del font[cff]
        maxp = newTable("maxp")
        maxp.tableVersion = 0x00010000
        for k in ("maxZones",):
            setattr(maxp, k, 1)
        for k in ("maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                  "maxStackElements", "maxSizeOfInstructions", "maxComponentElements"):
            setattr(maxp, k, 0)
        maxp.numGlyphs = len(order)
        font["maxp"] = maxp
        maxp.recalc(font)
        font["head"].glyphDataFormat = 0
        post = font["post"]
        post.formatType = 2.0
        post.extraNames = []
        post.mapping = {}
        post.glyphOrder = order
        names = font["name"]
        for rec in list(names.names):
            if rec.nameID in (1, 3, 4, 16):
                names.setName(family, rec.nameID, rec.platformID, rec.platEncID, rec.langID)
            elif rec.nameID == 6:
                names.setName(f"NotoSansCJKsc-Regular-{tag}", 6, rec.platformID,
                              rec.platEncID, rec.langID)
        font.sfntVersion = "\x00\x01\x00\x00"
        part = out.with_name(f".{out.name}.{os.getpid()}")
        font.save(str(part))
        part.replace(out)  # concurrent runs never load half a font
    except (OSError, KeyError, ValueError, AssertionError) as exc:
        raise RenderFailed(f"cannot prepare the CJK font from {src}: {exc}") from exc
    return out, family


def setup_matplotlib(chars: str = "") -> str:
    """Use (and in PDFs embed as Type 42) a CJK font with `chars`; the family name."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager

    path, family = subset_font(chars)
    if family not in {f.name for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(str(path))
    matplotlib.rcParams.update({
        # Type 42 keeps the glyphs as an embedded font with a ToUnicode map, so the text
        # layer can be searched and copied; Type 3 would draw CJK as unnamed shapes.
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "font.family": [family],
        "axes.unicode_minus": False,
        "svg.fonttype": "none",
    })
    return family
