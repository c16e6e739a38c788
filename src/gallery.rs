//! `index.html`: one self-contained page to browse an output folder's heatmaps.
//!
//! The page is built from the [`Manifest`] alone, so `tensorheat gallery DIR` can rebuild
//! it from `DIR/manifest.json`, and the same manifest always gives the same bytes. It
//! references nothing but the PNGs beside it: the styles, the filter script and the colour
//! bars (CSS gradients with one hard-edged stop per lookup-table entry, the very colours
//! of the PNGs) are inline, so the page works from `file://` without a network. Every
//! string taken from the manifest is HTML-escaped, and an image is linked only when its
//! file name is a plain `[A-Za-z0-9._-]` name in the same folder, as tensorheat writes them.

use std::collections::hash_map::{Entry, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use crate::colour::Colormap;
use crate::config::Rgb;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, TensorEntry};
use crate::output::write_atomic;
use crate::reduce::Stats;

/// File name of the page, next to `manifest.json`.
pub const FILE_NAME: &str = "index.html";

/// Side in CSS pixels of the square each image is fitted into at the default card size.
const BOX: usize = 256;
/// Shortest displayed side, so that a 1-pixel-tall 1-D tensor stays visible.
const MIN_SIDE: usize = 12;

/// Writes `dir/index.html` for `manifest` (atomically, like every output file).
pub fn write_gallery(dir: &Path, manifest: &Manifest) -> Result<()> {
    write_atomic(dir, FILE_NAME, gallery_html(manifest).as_bytes())
}

/// Reads `dir/manifest.json` and writes `dir/index.html` from it; returns the manifest.
///
/// A missing or unreadable manifest is an [`Error::Io`], one that is not a tensorheat
/// manifest an [`Error::Input`]; both name the manifest file.
pub fn rebuild_gallery(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let bytes = crate::source::read_regular(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Input {
        path: path.clone(),
        reason: format!("not a valid tensorheat manifest: {e}"),
    })?;
    write_gallery(dir, &manifest)?;
    Ok(manifest)
}

/// The group a tensor's card goes in: its name up to and including the first all-digit
/// dotted segment (`model.layers.3.mlp.up_proj.weight` → `model.layers.3`), or, for a
/// name without one, its first dotted segment (`lm_head.weight` → `lm_head`).
pub fn group_of(name: &str) -> &str {
    let mut start = 0;
    for segment in name.split('.') {
        let end = start + segment.len();
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            return &name[..end];
        }
        start = end + 1;
    }
    name.split('.').next().unwrap_or(name)
}

/// The whole page for `manifest`.
pub fn gallery_html(m: &Manifest) -> String {
    let mut colormaps: Vec<String> = Vec::new();
    let mut groups: Vec<(&str, Vec<&TensorEntry>)> = Vec::new();
    // Each group's place in `groups` (in order of first appearance), found by name: a
    // search of `groups` made pages of tens of thousands of groups take seconds.
    let mut places: HashMap<&str, usize> = HashMap::new();
    for t in &m.tensors {
        let g = group_of(&t.name);
        match places.entry(g) {
            Entry::Occupied(at) => groups[*at.get()].1.push(t),
            Entry::Vacant(at) => {
                at.insert(groups.len());
                groups.push((g, vec![t]));
            }
        }
        if let Ok(c) = t.colormap.parse::<Colormap>() {
            if !colormaps.contains(&c.name()) {
                colormaps.push(c.name());
            }
        }
    }
    let nan = m.options.nan_color.parse::<Rgb>().ok();

    let mut h = String::with_capacity(8192 + 2048 * m.tensors.len());
    let title = if m.inputs.is_empty() {
        "tensorheat".to_owned()
    } else {
        format!("tensorheat: {}", m.inputs.join(", "))
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"tensorheat {}\">\n<title>{}</title>\n<style>\n{STYLE}",
        esc(&m.tensorheat),
        esc(&title)
    );
    for (i, name) in colormaps.iter().enumerate() {
        if let Ok(c) = name.parse::<Colormap>() {
            let _ = writeln!(h, ".cm{i} {{ background: {}; }}", gradient(&c));
        }
    }
    if let Some(Rgb([r, g, b])) = nan {
        let _ = writeln!(h, ".nan {{ background: #{r:02x}{g:02x}{b:02x}; }}");
    }
    h.push_str("</style>\n</head>\n<body>\n");

    header(&mut h, m, nan);
    h.push_str("<main id=\"groups\">\n");
    for (group, cards) in &groups {
        // A group that is just one tensor of the same name needs no heading of its own.
        if cards.len() == 1 && cards[0].name == *group {
            h.push_str("<section class=\"group solo\">\n<div class=\"cards\">\n");
        } else {
            let label = if group.is_empty() { "(no name)" } else { group };
            let _ = writeln!(
                h,
                "<section class=\"group\">\n<h2>{} <span class=\"count\">{}</span></h2>\n<div class=\"cards\">",
                esc(label),
                cards.len()
            );
        }
        for t in cards {
            let cm = colormaps
                .iter()
                .position(|c| t.colormap.parse::<Colormap>().is_ok_and(|p| &p.name() == c));
            card(&mut h, t, cm);
        }
        h.push_str("</div>\n</section>\n");
    }
    if m.tensors.is_empty() {
        h.push_str("<p class=\"none\">No tensor was rendered.</p>\n");
    }
    h.push_str("</main>\n");
    lists(&mut h, m);
    let _ = write!(h, "<script>\n{SCRIPT}</script>\n</body>\n</html>\n");
    h
}

/// Title, inputs, options, counts and the controls.
fn header(h: &mut String, m: &Manifest, nan: Option<Rgb>) {
    let o = &m.options;
    h.push_str("<header>\n<h1>tensorheat</h1>\n<p class=\"inputs\">");
    for (i, input) in m.inputs.iter().enumerate() {
        if i > 0 {
            h.push_str(", ");
        }
        let _ = write!(h, "<code>{}</code>", esc(input));
    }
    h.push_str("</p>\n<p class=\"options\">");
    let mut opts = vec![format!("reduce <b>{}</b>", esc(&o.reduce))];
    match (o.block, o.max_size) {
        (Some([r, c]), _) => opts.push(format!("block <b>{r}×{c}</b>")),
        (None, Some([r, c])) => opts.push(format!("max size <b>{r}×{c}</b>")),
        (None, None) => {}
    }
    if o.keep_aspect {
        opts.push("keep aspect".to_owned());
    }
    match o.range {
        Some([lo, hi]) => opts.push(format!("range <b>{}:{}</b>", num(lo), num(hi))),
        None => opts.push(format!("clip <b>{}</b>", num(o.clip))),
    }
    opts.push(format!(
        "colormap <b>{}</b>",
        esc(o.colormap.as_deref().unwrap_or("auto"))
    ));
    if nan.is_some() {
        opts.push(format!(
            "NaN <span class=\"swatch nan\"></span> <b>{}</b>",
            esc(&o.nan_color)
        ));
    }
    if o.raw {
        opts.push(".npy grids".to_owned());
    }
    opts.push(format!("tensorheat {}", esc(&m.tensorheat)));
    h.push_str(&opts.join(" · "));
    let (ns, ne) = (m.skipped.len(), m.errors.len());
    let _ = write!(
        h,
        "</p>\n<p class=\"counts\"><b>{}</b> rendered · <a href=\"#skipped\">{ns} skipped</a> · \
         <a href=\"#errors\"{}>{ne} {}</a></p>\n",
        m.tensors.len(),
        if ne > 0 { " class=\"bad\"" } else { "" },
        if ne == 1 { "error" } else { "errors" }
    );
    h.push_str(
        "<p class=\"controls\"><input id=\"filter\" type=\"search\" autofocus \
         placeholder=\"filter by name: substring or /regex/\" aria-label=\"filter by name\"> \
         <span id=\"shown\"></span> \
         <label>size <select id=\"size\"><option value=\"160\">small</option>\
         <option value=\"256\" selected>medium</option><option value=\"512\">large</option>\
         <option value=\"1024\">huge</option></select></label></p>\n</header>\n",
    );
}

/// One tensor's card.
fn card(h: &mut String, t: &TensorEntry, colormap_class: Option<usize>) {
    let name = esc(&t.name);
    let [gh, gw] = t.grid;
    let _ = writeln!(h, "<article class=\"card\" data-name=\"{name}\">");
    match local_file(&t.image) {
        Some(file) => {
            let (dh, dw) = display_size(gh, gw, BOX);
            let up = if dh >= gh && dw >= gw { " up" } else { "" };
            let _ = writeln!(
                h,
                "<a class=\"frame\" href=\"{file}\" title=\"open the PNG ({gw}×{gh} pixels)\">\
                 <img class=\"map{up}\" src=\"{file}\" width=\"{dw}\" height=\"{dh}\" \
                 data-w=\"{gw}\" data-h=\"{gh}\" alt=\"heatmap of {name}\" loading=\"lazy\" \
                 decoding=\"async\"></a>"
            );
        }
        None => h.push_str("<div class=\"frame missing\">no image</div>\n"),
    }
    // Long names may wrap after a dot or underscore (escaping leaves no `.` or `_` inside
    // an entity, so inserting break opportunities after them is safe).
    let breakable = name.replace('.', ".<wbr>").replace('_', "_<wbr>");
    let _ = write!(h, "<h3 class=\"name\">{breakable}</h3>\n<p class=\"meta\">");
    let _ = write!(
        h,
        "<b>{}</b> {} · grid {gh}×{gw} · block {}×{} · <b>{}</b>",
        esc(&t.dtype),
        shape(&t.shape),
        t.block[0],
        t.block[1],
        esc(&t.reduce)
    );
    if let Some(raw) = t.raw.as_deref().and_then(local_file) {
        let _ = write!(h, " · <a href=\"{raw}\">.npy</a>");
    }
    let _ = writeln!(
        h,
        "<br><span class=\"source\">{}</span></p>",
        esc(&t.source)
    );
    colour_bar(h, t, colormap_class);
    stats(h, &t.stats);
    h.push_str("</article>\n");
}

/// The colour bar with its ticks: `lo`, `0` when strictly inside the range, `hi`.
fn colour_bar(h: &mut String, t: &TensorEntry, class: Option<usize>) {
    h.push_str("<div class=\"cbar\">");
    match class {
        Some(i) => {
            let _ = write!(
                h,
                "<div class=\"bar cm{i}\" title=\"{}\"></div>",
                esc(&t.colormap)
            );
        }
        None => {
            let _ = write!(
                h,
                "<div class=\"bar unknown\">unknown colormap {}</div>",
                esc(&t.colormap)
            );
        }
    }
    match t.range {
        Some([lo, hi]) => {
            let _ = write!(
                h,
                "<div class=\"ticks\"><span class=\"lo\">{}</span>",
                num(lo)
            );
            if lo < 0.0 && hi > 0.0 {
                let at = -lo / (hi - lo) * 100.0;
                let _ = write!(h, "<span class=\"zero\" style=\"left:{at:.3}%\">0</span>");
            }
            let _ = write!(h, "<span class=\"hi\">{}</span></div>", num(hi));
        }
        None => h.push_str("<div class=\"ticks\"><span class=\"lo\">no finite cell</span></div>"),
    }
    let _ = write!(h, "<p class=\"cmname\">{}", esc(&t.colormap));
    if t.stats.nan + t.stats.inf > 0 {
        h.push_str(" · <span class=\"swatch nan\"></span> no finite value");
    }
    h.push_str("</p></div>\n");
}

/// The full-data statistics.
fn stats(h: &mut String, s: &Stats) {
    let opt = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), num);
    let _ = writeln!(
        h,
        "<dl class=\"stats\"><div><dt>min</dt><dd>{}</dd></div><div><dt>max</dt><dd>{}</dd></div>\
         <div><dt>mean</dt><dd>{}</dd></div><div><dt>std</dt><dd>{}</dd></div>\
         <div><dt>count</dt><dd>{}</dd></div><div><dt>zeros</dt><dd>{}</dd></div>\
         <div><dt>NaN</dt><dd{}>{}</dd></div><div><dt>Inf</dt><dd{}>{}</dd></div></dl>",
        opt(s.min),
        opt(s.max),
        opt(s.mean),
        opt(s.std),
        s.count,
        s.zeros,
        if s.nan > 0 { " class=\"bad\"" } else { "" },
        s.nan,
        if s.inf > 0 { " class=\"bad\"" } else { "" },
        s.inf
    );
}

/// The skipped tensors and the errors.
fn lists(h: &mut String, m: &Manifest) {
    let _ = writeln!(
        h,
        "<section id=\"skipped\" class=\"list\">\n<h2>Skipped <span class=\"count\">{}</span></h2>",
        m.skipped.len()
    );
    if m.skipped.is_empty() {
        h.push_str("<p class=\"none\">None.</p>\n");
    } else {
        h.push_str("<table><tr><th>name</th><th>dtype</th><th>reason</th><th>source</th></tr>\n");
        for s in &m.skipped {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                esc(&s.dtype),
                esc(&s.reason),
                esc(&s.source)
            );
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(
        h,
        "</section>\n<section id=\"errors\" class=\"list\">\n<h2>Errors <span class=\"count\">{}</span></h2>",
        m.errors.len()
    );
    if m.errors.is_empty() {
        h.push_str("<p class=\"none\">None.</p>\n");
    } else {
        h.push_str("<table><tr><th>input</th><th>tensor</th><th>message</th></tr>\n");
        for e in &m.errors {
            let _ = writeln!(
                h,
                "<tr class=\"bad\"><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&e.input),
                e.name.as_deref().map_or_else(|| "–".to_owned(), esc),
                esc(&e.message)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");
}

/// A CSS `linear-gradient` with one hard-edged stop per LUT entry (runs of one colour
/// merged), so the bar shows exactly the 256 colours the PNGs use, in equal-width bins.
fn gradient(c: &Colormap) -> String {
    let lut = c.lut();
    let mut stops = Vec::new();
    let mut i = 0;
    while i < lut.0.len() {
        let mut j = i + 1;
        while j < lut.0.len() && lut.0[j] == lut.0[i] {
            j += 1;
        }
        let [r, g, b] = lut.0[i];
        stops.push(format!("#{r:02x}{g:02x}{b:02x} {}% {}%", pct(i), pct(j)));
        i = j;
    }
    format!("linear-gradient(to right, {})", stops.join(", "))
}

/// `i / 256` as a trimmed percentage, exact with six decimals (`100 / 256 = 0.390625`).
fn pct(i: usize) -> String {
    trim(format!("{:.6}", i as f64 * 100.0 / 256.0))
}

/// Displayed `(height, width)` of a `gh × gw` image fitted into a `side`-pixel square:
/// a whole-number enlargement when it fits (so pixels stay square and crisp), a
/// reduction otherwise, and never a side under [`MIN_SIDE`]. Mirrors the page's script.
fn display_size(gh: usize, gw: usize, side: usize) -> (usize, usize) {
    let big = gh.max(gw).max(1);
    let (h, w) = if big <= side {
        let k = side / big;
        (gh * k, gw * k)
    } else {
        let s = side as f64 / big as f64;
        (
            (gh as f64 * s).round() as usize,
            (gw as f64 * s).round() as usize,
        )
    };
    (h.max(MIN_SIDE), w.max(MIN_SIDE))
}

/// `name` when it is a plain file name in the output folder, as [`crate::output`]
/// writes them (non-empty, `[A-Za-z0-9._-]`, not starting with `.`), else `None`.
fn local_file(name: &str) -> Option<&str> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    plain.then_some(name)
}

/// `[4096, 4096]`.
fn shape(s: &[usize]) -> String {
    let dims: Vec<String> = s.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// HTML-escapes text for element content and double- or single-quoted attributes.
/// Control characters, which HTML cannot carry faithfully, become their visible
/// Unicode "control pictures" (U+2400…).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\u{0}'..='\u{1f}' => {
                out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'));
            }
            '\u{7f}' => out.push('\u{2421}'),
            c => out.push(c),
        }
    }
    out
}

/// A number for people: four significant digits, plain notation between 0.001 and
/// 100,000, scientific outside (`-0.03125`, `1.5e-7`, `0`).
pub fn num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let digits = (3 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.digits$}");
        // Rounding can carry into a new digit (9.9996 → 10.000); trimming handles it.
        trim(s)
    } else {
        let s = format!("{v:.3e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim(mantissa.to_owned())),
            None => s,
        }
    }
}

/// Drops trailing zeros after a decimal point, and the point itself if nothing is left.
fn trim(mut s: String) -> String {
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

const STYLE: &str = r#":root { color-scheme: light dark; --bg: #f6f6f4; --card: #fff; --fg: #1d1d1f;
  --muted: #6b6b70; --line: #dcdcd8; --frame: #ececea; --bad: #c62828; --box: 256px; }
@media (prefers-color-scheme: dark) { :root { --bg: #161618; --card: #222225; --fg: #ececec;
  --muted: #9a9aa0; --line: #38383c; --frame: #2c2c30; --bad: #ff6b6b; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 20px 40px; background: var(--bg); color: var(--fg);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { margin-bottom: 12px; }
h1 { font-size: 20px; margin: 0 0 2px; }
header p { margin: 2px 0; color: var(--muted); }
header b { color: var(--fg); font-weight: 600; }
code, .name, .stats dd, .ticks { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; }
a { color: inherit; }
.controls { margin-top: 10px !important; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
#filter { width: min(480px, 100%); padding: 6px 10px; font: inherit; border: 1px solid var(--line);
  border-radius: 6px; background: var(--card); color: var(--fg); }
#filter.invalid { border-color: var(--bad); }
select { font: inherit; }
main { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.group { max-width: 100%; }
.group h2 { font-size: 13.5px; margin: 0 0 6px; padding-bottom: 3px; border-bottom: 2px solid var(--line);
  font-family: ui-monospace, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
.group.solo { padding-top: 28px; }
.count { color: var(--muted); font-weight: normal; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { width: calc(var(--box) + 18px); background: var(--card); border: 1px solid var(--line);
  border-radius: 6px; padding: 8px; }
.frame { display: flex; align-items: center; justify-content: center; width: var(--box);
  height: var(--box); background: var(--frame); border-radius: 3px; overflow: hidden; }
.frame.missing { color: var(--muted); }
img.map { display: block; }
img.map.up { image-rendering: pixelated; image-rendering: crisp-edges; }
.name { font-size: 12.5px; font-weight: 600; margin: 8px 0 2px; overflow-wrap: anywhere; }
.meta { margin: 0 0 6px; font-size: 12px; color: var(--muted); }
.meta b { color: var(--fg); font-weight: 600; }
.source { font-size: 11px; overflow-wrap: anywhere; }
.bar { height: 12px; border-radius: 2px; border: 1px solid var(--line); }
.bar.unknown { height: auto; font-size: 11px; color: var(--bad); }
.ticks { position: relative; height: 16px; font-size: 11px; }
.ticks span { position: absolute; top: 1px; white-space: nowrap; }
.ticks .lo { left: 0; }
.ticks .hi { right: 0; }
.ticks .zero { transform: translateX(-50%); }
.ticks .zero::before { content: ""; position: absolute; left: 50%; top: -4px; height: 4px;
  border-left: 1px solid var(--fg); }
.cmname { margin: 0 0 4px; font-size: 11px; color: var(--muted); }
.swatch { display: inline-block; width: 10px; height: 10px; border: 1px solid var(--line);
  vertical-align: -1px; }
.stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(118px, 1fr)); gap: 0 10px;
  margin: 0; font-size: 11.5px; }
.stats div { display: flex; gap: 6px; min-width: 0; }
.stats dt { color: var(--muted); flex: 0 0 38px; }
.stats dd { margin: 0; overflow-wrap: anywhere; }
.bad { color: var(--bad) !important; }
.list { margin-top: 24px; }
.list h2 { font-size: 16px; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: anywhere; }
.none { color: var(--muted); }
[hidden] { display: none !important; }
"#;

/// Filter box, card size, and `data-images` / `data-loaded` / `data-failed` counts on
/// `<body>` (kept up to date as images load; the browser test reads them).
const SCRIPT: &str = r##""use strict";
(function () {
  const cards = Array.from(document.querySelectorAll(".card"));
  const groups = Array.from(document.querySelectorAll(".group"));
  const imgs = Array.from(document.querySelectorAll("img.map"));
  const filter = document.getElementById("filter");
  const shown = document.getElementById("shown");
  const size = document.getElementById("size");
  const state = new Map();
  function report() {
    let ok = 0, bad = 0;
    state.forEach(function (v) { if (v) { ok++; } else { bad++; } });
    document.body.dataset.images = imgs.length;
    document.body.dataset.loaded = ok;
    document.body.dataset.failed = bad;
  }
  function settle(img) {
    if (img.complete) { state.set(img, img.naturalWidth > 0); report(); }
  }
  imgs.forEach(function (img) {
    img.addEventListener("load", function () { settle(img); });
    img.addEventListener("error", function () { state.set(img, false); report(); });
    settle(img);
  });
  report();
  function matcher(q) {
    const m = /^\/(.+)\/([a-z]*)$/.exec(q);
    if (m) {
      try {
        const re = new RegExp(m[1], m[2].includes("i") ? m[2] : m[2] + "i");
        return function (name) { return re.test(name); };
      } catch (e) { return null; }
    }
    const needle = q.toLowerCase();
    return function (name) { return name.toLowerCase().includes(needle); };
  }
  function apply() {
    const q = filter.value.trim();
    const match = matcher(q);
    filter.classList.toggle("invalid", match === null);
    if (match === null) { return; }
    let n = 0;
    cards.forEach(function (c) {
      const hit = match(c.dataset.name);
      c.hidden = !hit;
      if (hit) { n++; }
    });
    groups.forEach(function (g) { g.hidden = !g.querySelector(".card:not([hidden])"); });
    shown.textContent = q ? n + " of " + cards.length + " shown" : "";
  }
  function resize() {
    const side = Number(size.value);
    document.documentElement.style.setProperty("--box", side + "px");
    imgs.forEach(function (img) {
      const gh = Number(img.dataset.h), gw = Number(img.dataset.w);
      const big = Math.max(gh, gw, 1);
      let h, w;
      if (big <= side) {
        const k = Math.floor(side / big);
        h = gh * k; w = gw * k;
      } else {
        const s = side / big;
        h = Math.round(gh * s); w = Math.round(gw * s);
      }
      img.width = Math.max(w, 12);
      img.height = Math.max(h, 12);
      img.classList.toggle("up", h >= gh && w >= gw);
    });
  }
  // The filter and size live in the URL's fragment (#q=proj&size=512): a reload or a
  // shared link shows the same view.
  function remember() {
    const p = new URLSearchParams();
    if (filter.value) { p.set("q", filter.value); }
    if (size.value !== "256") { p.set("size", size.value); }
    const hash = p.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }
  const saved = new URLSearchParams(location.hash.slice(1));
  if (saved.has("q")) { filter.value = saved.get("q"); }
  if (saved.has("size") && size.querySelector('option[value="' + CSS.escape(saved.get("size")) + '"]')) {
    size.value = saved.get("size");
  }
  filter.addEventListener("input", function () { apply(); remember(); });
  size.addEventListener("change", function () { resize(); remember(); });
  if (filter.value) { apply(); }
  if (size.value !== "256") { resize(); }
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ErrorEntry, Options, Skipped};
    use crate::RenderConfig;

    fn entry(name: &str, image: &str, range: Option<[f64; 2]>) -> TensorEntry {
        TensorEntry {
            name: name.to_owned(),
            source: "m.safetensors".to_owned(),
            dtype: "BF16".to_owned(),
            shape: vec![8, 4],
            image: image.to_owned(),
            raw: None,
            grid: [8, 4],
            block: [1, 1],
            reduce: "mean".to_owned(),
            colormap: "RdBu_r".to_owned(),
            range,
            stats: Stats {
                count: 32,
                min: Some(-1.0),
                max: Some(2.0),
                mean: Some(0.5),
                std: Some(0.25),
                nan: 0,
                inf: 0,
                zeros: 1,
            },
            fp8: None,
        }
    }

    fn manifest(tensors: Vec<TensorEntry>) -> Manifest {
        Manifest {
            tensorheat: "0.1.0".to_owned(),
            inputs: vec!["m.safetensors".to_owned()],
            options: Options::from(&RenderConfig::default()),
            tensors,
            skipped: vec![Skipped {
                name: "c<64>".to_owned(),
                source: "m.safetensors".to_owned(),
                dtype: "C64".to_owned(),
                reason: "unsupported dtype".to_owned(),
            }],
            errors: vec![ErrorEntry {
                input: "m.safetensors".to_owned(),
                name: Some("x&y".to_owned()),
                message: "m.safetensors: tensor \"x&y\": <bad>".to_owned(),
            }],
        }
    }

    #[test]
    fn groups_by_layer_prefix_or_first_segment() {
        assert_eq!(
            group_of("model.layers.3.self_attn.q_proj.weight"),
            "model.layers.3"
        );
        assert_eq!(
            group_of("model.layers.10.mlp.experts.7.w"),
            "model.layers.10"
        );
        assert_eq!(group_of("model.embed_tokens.weight"), "model");
        assert_eq!(group_of("lm_head.weight"), "lm_head");
        assert_eq!(group_of("0.weight"), "0");
        assert_eq!(group_of("grad_f32"), "grad_f32");
        assert_eq!(group_of(""), "");
        assert_eq!(group_of("a..3x.4"), "a..3x.4");
        assert_eq!(group_of(".5.w"), ".5");
    }

    #[test]
    fn escapes_everything_from_the_manifest() {
        assert_eq!(
            esc("<script>alert('1') & \"x\"</script>"),
            "&lt;script&gt;alert(&#39;1&#39;) &amp; &quot;x&quot;&lt;/script&gt;"
        );
        assert_eq!(esc("a\0b\nc\u{7f}"), "a\u{2400}b\u{240a}c\u{2421}");
        let hostile = "<script>alert(1)</script>";
        let html = gallery_html(&manifest(vec![entry(hostile, "_script_.png", None)]));
        assert!(!html.contains(hostile));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<bad>") && !html.contains("c<64>") && !html.contains("x&y"));
    }

    #[test]
    fn links_only_plain_local_files() {
        assert_eq!(local_file("a.weight.png"), Some("a.weight.png"));
        for bad in [
            "",
            ".hidden.png",
            "../x.png",
            "a/b.png",
            "https://example.com/x.png",
            "x y.png",
            "x\".png",
        ] {
            assert_eq!(local_file(bad), None, "{bad}");
        }
        let m = manifest(vec![
            entry("a", "a.png", Some([-1.0, 2.0])),
            entry("b", "http://example.com/b.png", None),
        ]);
        let html = gallery_html(&m);
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert_eq!(html.matches("<article class=\"card\"").count(), 2);
        assert_eq!(html.matches("<img ").count(), 1);
        assert!(html.contains("src=\"a.png\""));
    }

    #[test]
    fn colour_bar_uses_the_lut_and_ticks_the_range() {
        let c: Colormap = "RdBu_r".parse().unwrap();
        let g = gradient(&c);
        let lut = c.lut();
        let [r, gg, b] = lut.0[0];
        assert!(g.starts_with(&format!(
            "linear-gradient(to right, #{r:02x}{gg:02x}{b:02x} 0% "
        )));
        let [r, gg, b] = lut.0[255];
        assert!(g.ends_with(&format!("#{r:02x}{gg:02x}{b:02x} 99.609375% 100%)")));
        assert_eq!(pct(1), "0.390625");
        let html = gallery_html(&manifest(vec![entry("a", "a.png", Some([-1.0, 3.0]))]));
        assert!(html.contains("<span class=\"lo\">-1</span>"));
        assert!(html.contains("<span class=\"zero\" style=\"left:25.000%\">0</span>"));
        assert!(html.contains("<span class=\"hi\">3</span>"));
        let html = gallery_html(&manifest(vec![entry("a", "a.png", Some([0.5, 3.0]))]));
        assert!(!html.contains("class=\"zero\""));
    }

    #[test]
    fn numbers_read_well() {
        for (v, s) in [
            (0.0, "0"),
            (-0.03125, "-0.03125"),
            (0.031234567, "0.03123"),
            (1.0, "1"),
            (-1234.5678, "-1235"),
            (99999.0, "99999"),
            (9.99996, "10"),
            (1.5e-7, "1.5e-7"),
            (-2.0e6, "-2e6"),
            (123456.0, "1.235e5"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(num(v), s, "{v}");
        }
    }

    #[test]
    fn images_are_fitted_crisply() {
        assert_eq!(display_size(12, 20, 288), (12 * 14, 20 * 14));
        assert_eq!(display_size(1024, 512, 288), (288, 144));
        assert_eq!(display_size(1, 700, 288), (12, 288));
        assert_eq!(display_size(1, 1, 288), (288, 288));
    }

    #[test]
    fn same_manifest_same_bytes() {
        let m = manifest(vec![
            entry("model.layers.2.w", "a.png", Some([-1.0, 1.0])),
            entry("model.layers.10.w", "b.png", Some([0.0, 1.0])),
            entry("model.norm", "c.png", None),
        ]);
        assert_eq!(gallery_html(&m), gallery_html(&m.clone()));
        let html = gallery_html(&m);
        // Groups in order of first appearance; cards keep manifest order.
        let p2 = html.find("<h2>model.layers.2 ").unwrap();
        let p10 = html.find("<h2>model.layers.10 ").unwrap();
        let pm = html.find("<h2>model ").unwrap();
        assert!(p2 < p10 && p10 < pm);
    }

    #[test]
    fn a_tensor_alone_in_its_own_group_gets_no_heading() {
        // "grad_f32" is its own group (no dot) and the only card in it; the two layer
        // tensors share "model.layers.0", which needs a heading with its count.
        let m = manifest(vec![
            entry("grad_f32", "grad_f32.png", None),
            entry("model.layers.0.a", "a.png", None),
            entry("model.layers.0.b", "b.png", None),
        ]);
        let html = gallery_html(&m);
        assert_eq!(html.matches("<section class=\"group solo\">").count(), 1);
        assert_eq!(html.matches("<section class=\"group\">").count(), 1);
        assert!(!html.contains("<h2>grad_f32"));
        assert!(html.contains("<h2>model.layers.0 <span class=\"count\">2</span></h2>"));
        // The solo section is the one holding grad_f32's card.
        let solo = html.find("<section class=\"group solo\">").unwrap();
        let card = html.find("data-name=\"grad_f32\"").unwrap();
        let layer = html.find("<h2>model.layers.0 ").unwrap();
        assert!(solo < card && card < layer);
    }

    #[test]
    fn each_bar_gets_the_class_of_its_own_colormap() {
        // Two colormaps in order of first appearance: cm0 is RdBu_r, cm1 viridis.
        let mut v = entry("b", "b.png", None);
        v.colormap = "viridis".to_owned();
        let m = manifest(vec![
            entry("a", "a.png", None),
            v,
            entry("c", "c.png", None),
        ]);
        let html = gallery_html(&m);
        for (i, name) in ["RdBu_r", "viridis"].into_iter().enumerate() {
            let c: Colormap = name.parse().unwrap();
            assert!(html.contains(&format!(".cm{i} {{ background: {}; }}", gradient(&c))));
        }
        let bars: Vec<&str> = html
            .match_indices("<div class=\"bar ")
            .map(|(at, _)| &html[at..at + html[at..].find('>').unwrap()])
            .collect();
        assert_eq!(
            bars,
            [
                "<div class=\"bar cm0\" title=\"RdBu_r\"",
                "<div class=\"bar cm1\" title=\"viridis\"",
                "<div class=\"bar cm0\" title=\"RdBu_r\"",
            ]
        );
    }

    #[test]
    fn inputs_are_listed_with_commas_between() {
        let mut m = manifest(vec![]);
        let one = gallery_html(&m);
        assert!(one.contains("<p class=\"inputs\"><code>m.safetensors</code></p>"));
        m.inputs = vec!["a.safetensors".to_owned(), "b".to_owned(), "c".to_owned()];
        let three = gallery_html(&m);
        assert!(three.contains(
            "<p class=\"inputs\"><code>a.safetensors</code>, <code>b</code>, <code>c</code></p>"
        ));
    }

    #[test]
    fn only_enlarged_images_are_pixelated() {
        // `up` (crisp, pixelated scaling) exactly when neither side is shrunk.
        for (grid, up) in [
            ([8, 4], true),       // ×32 both ways
            ([256, 256], true),   // ×1
            ([1024, 512], false), // both halved
            ([1, 700], false),    // height raised to the minimum side, width shrunk
            ([700, 1], false),
        ] {
            let mut t = entry("t", "t.png", None);
            t.grid = grid;
            let mut h = String::new();
            card(&mut h, &t, Some(0));
            let class = if up { "map up" } else { "map" };
            assert!(
                h.contains(&format!("<img class=\"{class}\" ")),
                "{grid:?}: {h}"
            );
        }
    }

    #[test]
    fn zero_is_ticked_only_strictly_inside_the_range() {
        for (range, zero) in [
            ([-1.0, 3.0], true),
            ([0.0, 2.0], false),
            ([-2.0, 0.0], false),
            ([0.5, 3.0], false),
            ([-3.0, -0.5], false),
        ] {
            let html = gallery_html(&manifest(vec![entry("a", "a.png", Some(range))]));
            assert_eq!(html.contains("class=\"zero\""), zero, "{range:?}");
        }
    }

    #[test]
    fn the_nan_swatch_is_explained_only_where_a_value_is_not_finite() {
        const NOTE: &str = "<span class=\"swatch nan\"></span> no finite value";
        for (nan, inf, note) in [(0, 0, false), (2, 0, true), (0, 3, true), (1, 1, true)] {
            let mut t = entry("t", "t.png", Some([-1.0, 1.0]));
            t.stats.nan = nan;
            t.stats.inf = inf;
            let mut h = String::new();
            colour_bar(&mut h, &t, Some(0));
            assert_eq!(h.contains(NOTE), note, "nan {nan}, inf {inf}");
        }
    }

    #[test]
    fn gradient_stops_merge_each_run_of_one_colour() {
        // Reference: a new stop wherever the colour differs from the entry before it.
        let mut merged_somewhere = false;
        for name in Colormap::names() {
            let c: Colormap = name.parse().unwrap();
            let lut = c.lut().0;
            let starts: Vec<usize> = (0..256)
                .filter(|&k| k == 0 || lut[k] != lut[k - 1])
                .collect();
            merged_somewhere |= starts.len() < 256;
            let expected: Vec<String> = starts
                .iter()
                .zip(starts.iter().skip(1).chain([&256]))
                .map(|(&a, &b)| {
                    let [r, g, bl] = lut[a];
                    format!(
                        "#{r:02x}{g:02x}{bl:02x} {}% {}%",
                        a as f64 * 100.0 / 256.0,
                        b as f64 * 100.0 / 256.0
                    )
                })
                .collect();
            assert_eq!(
                gradient(&c),
                format!("linear-gradient(to right, {})", expected.join(", ")),
                "{name}"
            );
        }
        assert!(
            merged_somewhere,
            "no colormap repeats a colour: the test shows nothing"
        );
    }
}
