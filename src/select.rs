//! Choosing and ordering tensors.
//!
//! Everything that lists tensors (manifest, `list`, file-name collision suffixes) uses
//! natural order of the names, so `layers.2` comes before `layers.10`.

use std::cmp::Ordering;

/// Compares two names in natural order: runs of ASCII digits compare by numeric value
/// (then by length, so `01` sorts after `1`), everything else byte by byte.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            let sj = j;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let (da, db) = (trim_zeros(&a[si..i]), trim_zeros(&b[sj..j]));
            let ord = da
                .len()
                .cmp(&db.len())
                .then_with(|| da.cmp(db))
                .then_with(|| (i - si).cmp(&(j - sj)));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let k = d.iter().position(|&c| c != b'0').unwrap_or(d.len());
    &d[k..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_sort_numerically() {
        let mut v = vec![
            "model.layers.10.mlp",
            "model.layers.2.mlp",
            "lm_head",
            "model.layers.2.attn",
            "model.layers.1.mlp",
            "model.embed",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "lm_head",
                "model.embed",
                "model.layers.1.mlp",
                "model.layers.2.attn",
                "model.layers.2.mlp",
                "model.layers.10.mlp",
            ]
        );
    }

    #[test]
    fn order_is_total_and_consistent() {
        assert_eq!(natural_cmp("a1", "a01"), Ordering::Less);
        assert_eq!(natural_cmp("a01", "a1"), Ordering::Greater);
        assert_eq!(natural_cmp("a", "a0"), Ordering::Less);
        assert_eq!(natural_cmp("x9y", "x10"), Ordering::Less);
        assert_eq!(natural_cmp("same", "same"), Ordering::Equal);
        assert_eq!(
            natural_cmp("99999999999999999999999", "100000000000000000000000"),
            Ordering::Less
        );
    }
}
