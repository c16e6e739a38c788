//! The colormaps against matplotlib's own 256-entry tables (`tests/data/colormaps.bin.zlib`,
//! written by `tests/data/make_colormap_tables.py`): each within the bound the README
//! states for it, in matplotlib's direction, and `_r` reversed.

use std::path::Path;

use tensorheat::colour::Colormap;

/// The maps in the order the script writes them.
const NAMES: [&str; 23] = [
    "viridis", "magma", "inferno", "plasma", "cividis", "turbo", "Greys", "Blues", "Greens",
    "Oranges", "Purples", "Reds", "YlOrRd", "YlGnBu", "RdBu", "RdYlBu", "RdYlGn", "Spectral",
    "BrBG", "PiYG", "PRGn", "PuOr", "RdGy",
];

/// The largest difference from matplotlib, in levels of 255, of each of [`NAMES`], as the
/// README states them: d3's (colorous's) versions of the perceptual maps match, its
/// ColorBrewer maps are splines where matplotlib interpolates linearly, and its cividis
/// and turbo are approximations.
const LARGEST: [u8; 23] = [
    1, 1, 1, 1, 19, 32, 2, 4, 5, 5, 3, 4, 5, 7, 9, 11, 16, 15, 11, 11, 8, 12, 14,
];

/// matplotlib's table for each of [`NAMES`].
fn matplotlib() -> Vec<[[u8; 3]; 256]> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/colormaps.bin.zlib");
    let z = std::fs::read(path).expect("colormap tables");
    let deltas = miniz_oxide::inflate::decompress_to_vec_zlib(&z).expect("zlib");
    assert_eq!(deltas.len(), NAMES.len() * 768);
    deltas
        .chunks_exact(768)
        .map(|map| {
            let mut rgb = [[0u8; 3]; 256];
            let mut last = [0u8; 3];
            for (entry, d) in rgb.iter_mut().zip(map.chunks_exact(3)) {
                last = std::array::from_fn(|c| last[c].wrapping_add(d[c]));
                *entry = last;
            }
            rgb
        })
        .collect()
}

/// The largest difference of any channel of any entry.
fn largest_difference(a: &[[u8; 3]; 256], b: &[[u8; 3]; 256]) -> u8 {
    (a.iter().zip(b))
        .flat_map(|(x, y)| (0..3).map(move |c| x[c].abs_diff(y[c])))
        .max()
        .unwrap_or(0)
}

#[test]
fn colormaps_match_matplotlib_within_the_readme_bounds() {
    let names: Vec<&str> = Colormap::names().collect();
    assert_eq!(names, NAMES, "the script's list of maps is the tool's");
    let tables = matplotlib();
    for ((name, reference), largest) in NAMES.iter().zip(&tables).zip(LARGEST) {
        let lut = name.parse::<Colormap>().unwrap().lut().0;
        assert_eq!(largest_difference(&lut, reference), largest, "{name}");
        let mut reversed = *reference;
        reversed.reverse();
        let lut = format!("{name}_r").parse::<Colormap>().unwrap().lut().0;
        assert_eq!(largest_difference(&lut, &reversed), largest, "{name}_r");
    }
    // The default diverging map's middle, which the README gives for both.
    let rdbu = NAMES.iter().position(|&n| n == "RdBu").unwrap();
    let middle = Colormap::diverging_default().lut().0[128];
    assert_eq!(middle, [0xf2, 0xef, 0xed]);
    assert_eq!(tables[rdbu][255 - 128], [0xf7, 0xf6, 0xf6]);
}
