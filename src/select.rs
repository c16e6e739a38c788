//! Choosing and ordering tensors: name filters, partitions, natural order.
//!
//! Everything that lists tensors (manifest, `list`, file-name collision suffixes) uses
//! natural order of the names, so `layers.2` comes before `layers.10`. Filters decide
//! which tensors exist for a run at all; partitions then split the chosen ones between
//! workers by bytes, deterministically, after file names were assigned over the whole
//! selection, so that the union of all partitions is byte for byte a single run.

use std::cmp::Ordering;

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;

use crate::dtype::Dtype;
use crate::error::Error;

/// The safetensors format's dtypes that tensorheat does not decode: `list` shows their
/// tensors and `render` lists them as skipped, so `--dtype` accepts them too.
const LISTED_ONLY: [&str; 6] = [
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "F8_E4M3FNUZ",
    "F8_E5M2FNUZ",
    "C64",
];

/// Which tensors to use, by name and dtype. Empty lists mean "no constraint".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Keep only names matching one of these globs (`--include`).
    pub include: Vec<String>,
    /// Drop names matching one of these globs (`--exclude`).
    pub exclude: Vec<String>,
    /// Keep only names this regular expression finds a match in (`--regex`).
    pub regex: Option<String>,
    /// Keep only these dtypes, case-insensitive (`--dtype`).
    pub dtypes: Vec<String>,
}

/// `items` sorted, each once: a list whose order and repeats do not change what it
/// selects, in one form.
fn set(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v
}

/// A compiled [`Selection`].
#[derive(Debug, Clone)]
pub struct Matcher {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    regex: Option<Regex>,
    dtypes: Vec<String>,
}

impl Selection {
    /// The `--dtype` list as it selects: upper case, sorted, each name once (`bf16,F32`,
    /// `F32,BF16` and `BF16,bf16,F32` are one selection, and recorded as one).
    pub fn dtype_set(&self) -> Vec<String> {
        set(self.dtypes.iter().map(|d| d.to_ascii_uppercase()))
    }

    /// The `--include` globs as they select (any may match): sorted, each once.
    pub fn include_set(&self) -> Vec<String> {
        set(self.include.iter().cloned())
    }

    /// The `--exclude` globs as they select (any may match): sorted, each once.
    pub fn exclude_set(&self) -> Vec<String> {
        set(self.exclude.iter().cloned())
    }

    /// Whether every tensor is selected.
    pub fn is_empty(&self) -> bool {
        *self == Selection::default()
    }

    /// Compiles the globs and the regular expression, and checks the dtype names (a
    /// misspelt one would select nothing, silently).
    pub fn compile(&self) -> Result<Matcher, Error> {
        let known = |d: &str| Dtype::parse(d).is_some() || LISTED_ONLY.contains(&d);
        if let Some(d) = self.dtypes.iter().find(|d| !known(&d.to_ascii_uppercase())) {
            let names: Vec<&str> = Dtype::all()
                .iter()
                .map(|d| d.name())
                .chain(LISTED_ONLY)
                .collect();
            return Err(Error::Option(format!(
                "unknown dtype {d:?} (known: {})",
                names.join(", ")
            )));
        }
        let set = |globs: &[String]| -> Result<Option<GlobSet>, Error> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for g in globs {
                // (The error's kind: its full text repeats the glob.)
                b.add(
                    Glob::new(g).map_err(|e| Error::Option(format!("glob {g:?}: {}", e.kind())))?,
                );
            }
            b.build()
                .map(Some)
                .map_err(|e| Error::Option(e.to_string()))
        };
        Ok(Matcher {
            include: set(&self.include)?,
            exclude: set(&self.exclude)?,
            regex: self
                .regex
                .as_deref()
                .map(|r| {
                    Regex::new(r).map_err(|e| {
                        let why = match &e {
                            // The parser's message marks the place with a caret over
                            // several lines; its last line says what is wrong.
                            regex::Error::Syntax(text) => {
                                let why = text.lines().last().unwrap_or_default();
                                why.strip_prefix("error: ").unwrap_or(why).to_owned()
                            }
                            regex::Error::CompiledTooBig(limit) => {
                                format!("compiled, it is over the limit of {limit} bytes")
                            }
                            e => e.to_string(),
                        };
                        Error::Option(format!("regex {r:?}: {why}"))
                    })
                })
                .transpose()?,
            dtypes: self.dtype_set(),
        })
    }
}

impl Matcher {
    /// Whether a tensor of this name and dtype string is selected.
    pub fn matches(&self, name: &str, dtype: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(name))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(name))
            && self.regex.as_ref().is_none_or(|r| r.is_match(name))
            && (self.dtypes.is_empty() || self.dtypes.iter().any(|d| d.eq_ignore_ascii_case(dtype)))
    }
}

/// Worker `k` of `n` (`--partition K/N`, 1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// This worker, 1 ..= n.
    pub k: usize,
    /// Number of workers.
    pub n: usize,
}

impl std::str::FromStr for Partition {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::Option(format!(
                "partition {s:?} is not K/N with 1 <= K <= N <= {}",
                Partition::MAX_WORKERS
            ))
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        Partition::of_numbers(k.trim(), n.trim()).ok_or_else(bad)
    }
}

impl Partition {
    /// The most workers a partition may have: far more than any cluster job needs, and
    /// few enough that listing the missing ones stays short work (`N` near 2^64 made
    /// `render` allocate a load per worker and abort).
    pub const MAX_WORKERS: usize = 4096;

    /// Worker `k` of `n`, if `1 <= k <= n <= MAX_WORKERS`.
    pub fn new(k: usize, n: usize) -> Option<Partition> {
        (1 <= k && k <= n && n <= Partition::MAX_WORKERS).then_some(Partition { k, n })
    }

    /// Worker `k` of `n` from their decimal numbers (of `K/N`, or of a partial
    /// manifest's name), if both parse and [`Partition::new`] takes them.
    pub fn of_numbers(k: &str, n: &str) -> Option<Partition> {
        Partition::new(k.parse().ok()?, n.parse().ok()?)
    }

    /// The file name of this worker's partial manifest.
    pub fn manifest_name(&self) -> String {
        format!("manifest.{}-of-{}.json", self.k, self.n)
    }

    /// For items of the given sizes, whether each belongs to this worker. Items go,
    /// largest first (ties in their given order), to the worker with the fewest bytes
    /// so far (ties to the lowest number): every worker computes the same split.
    pub fn assign(&self, sizes: &[u64]) -> Vec<bool> {
        use std::cmp::Reverse;
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&i| Reverse(sizes[i]));
        // Each worker's (load, number), least first. Workers past the number of items
        // would never be chosen: a lower-numbered one always has as little load.
        let mut least: std::collections::BinaryHeap<Reverse<(u64, usize)>> =
            (0..self.n.min(sizes.len()))
                .map(|w| Reverse((0, w)))
                .collect();
        let mut mine = vec![false; sizes.len()];
        for i in order {
            let Some(Reverse((load, w))) = least.pop() else {
                break;
            };
            least.push(Reverse((load + sizes[i], w)));
            mine[i] = w + 1 == self.k;
        }
        mine
    }
}

/// Compares two names in natural order: runs of ASCII digits compare by numeric value,
/// everything else byte by byte; only names equal so are told apart by their first run
/// with more leading zeros, which sorts after (`a1` before `a01`, but `a01b3` before
/// `a1b10`).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut zeros = Ordering::Equal;
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
            let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
            if ord != Ordering::Equal {
                return ord;
            }
            zeros = zeros.then((i - si).cmp(&(j - sj)));
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j)).then(zeros)
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let k = d.iter().position(|&c| c != b'0').unwrap_or(d.len());
    &d[k..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_combine() {
        let sel = Selection {
            include: vec!["model.layers.*".into()],
            exclude: vec!["*.bias".into()],
            regex: Some(r"proj\.weight$".into()),
            dtypes: vec!["bf16".into()],
        };
        assert!(!sel.is_empty() && Selection::default().is_empty());
        for one in [
            Selection {
                include: vec!["a".into()],
                ..Selection::default()
            },
            Selection {
                regex: Some("a".into()),
                ..Selection::default()
            },
            Selection {
                dtypes: vec!["F32".into()],
                ..Selection::default()
            },
        ] {
            assert!(!one.is_empty(), "{one:?}");
        }
        let m = sel.compile().unwrap();
        assert!(m.matches("model.layers.3.q_proj.weight", "BF16"));
        assert!(!m.matches("model.layers.3.q_proj.weight", "F32"));
        assert!(!m.matches("model.layers.3.q_proj.bias", "BF16"));
        assert!(!m.matches("model.embed.weight", "BF16"));
        let typo = Selection {
            dtypes: vec!["f8_e4m3".into(), "c64".into(), "BF61".into()],
            ..Selection::default()
        };
        assert!(matches!(typo.compile(), Err(Error::Option(m)) if m.contains("\"BF61\"")));
        assert!(!m.matches("model.layers.3.norm.weight", "BF16"));
        assert!(Selection::default().compile().unwrap().matches("x", "C64"));
        let bad = Selection {
            regex: Some("(".into()),
            ..Selection::default()
        };
        assert!(bad.compile().is_err());
        // Too big to compile: one lowercase line, as the other messages.
        let huge = Selection {
            regex: Some("\\w{1000}{1000}".into()),
            ..Selection::default()
        };
        let m = match huge.compile() {
            Err(Error::Option(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            m.starts_with("regex ") && m.contains("compiled, it is over the limit of "),
            "{m}"
        );
    }

    #[test]
    fn partitions_cover_everything_once_and_balance_bytes() {
        let sizes = [100, 5, 60, 40, 1, 1, 30, 70];
        let parts: Vec<Vec<bool>> = (1..=3)
            .map(|k| Partition { k, n: 3 }.assign(&sizes))
            .collect();
        for i in 0..sizes.len() {
            assert_eq!(parts.iter().filter(|p| p[i]).count(), 1, "item {i}");
        }
        let loads: Vec<u64> = parts
            .iter()
            .map(|p| {
                sizes
                    .iter()
                    .zip(p)
                    .filter(|(_, &m)| m)
                    .map(|(s, _)| s)
                    .sum()
            })
            .collect();
        assert_eq!(loads, [105, 101, 101]);
        assert!("0/3".parse::<Partition>().is_err());
        assert!("4/3".parse::<Partition>().is_err());
        assert_eq!(
            "2/3".parse::<Partition>().unwrap(),
            Partition { k: 2, n: 3 }
        );
        // A worker count near 2^64 made `render` abort allocating a load per worker.
        assert!("1/18446744073709551615".parse::<Partition>().is_err());
        assert!("1/4097".parse::<Partition>().is_err());
        assert!("4096/4096".parse::<Partition>().is_ok());
    }

    /// The split is the one the rule gives (each item, largest first, to the least
    /// loaded worker, ties to the lowest number), written out naively here: with more
    /// workers than items, zero sizes and ties.
    #[test]
    fn partitions_follow_the_rule() {
        let naive = |sizes: &[u64], n: usize| -> Vec<usize> {
            let mut order: Vec<usize> = (0..sizes.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
            let (mut load, mut owner) = (vec![0u64; n], vec![0; sizes.len()]);
            for i in order {
                let w = (0..n).min_by_key(|&w| (load[w], w)).unwrap();
                load[w] += sizes[i];
                owner[i] = w + 1;
            }
            owner
        };
        let mut x = 7u64;
        for len in [0usize, 1, 5, 40, 300] {
            let sizes: Vec<u64> = (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    [0, 1, 1000, x >> 40][(x >> 62) as usize]
                })
                .collect();
            for n in [1, 2, 3, 7, 64, 4096] {
                let want = naive(&sizes, n);
                for k in (1..=n).filter(|&k| k <= 8 || k == n) {
                    let got = Partition { k, n }.assign(&sizes);
                    let expect: Vec<bool> = want.iter().map(|&w| w == k).collect();
                    assert_eq!(got, expect, "{len} items, {k}/{n}");
                }
            }
        }
    }

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
    fn order_is_a_total_order_on_short_names() {
        // Every name of up to four of `a`, `0`, `1`: antisymmetric, equal only to itself,
        // transitive (so a sort by it is well defined).
        let mut names = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = names
                .iter()
                .filter(|n| n.len() == names.last().map_or(0, String::len))
                .flat_map(|n| ["a", "0", "1"].map(|c| format!("{n}{c}")))
                .collect();
            names.extend(longer);
        }
        assert_eq!(names.len(), 1 + 3 + 9 + 27 + 81);
        for a in &names {
            for b in &names {
                let ab = natural_cmp(a, b);
                assert_eq!(ab, natural_cmp(b, a).reverse(), "{a} {b}");
                assert_eq!(ab == Ordering::Equal, a == b, "{a} {b}");
            }
        }
        let mut sorted = names.clone();
        sorted.sort_by(|a, b| natural_cmp(a, b));
        for (i, a) in sorted.iter().enumerate() {
            for b in &sorted[i + 1..] {
                assert_eq!(natural_cmp(a, b), Ordering::Less, "{a} {b}");
            }
        }
    }

    #[test]
    fn order_is_total_and_consistent() {
        assert_eq!(natural_cmp("a1", "a01"), Ordering::Less);
        assert_eq!(natural_cmp("a01", "a1"), Ordering::Greater);
        assert_eq!(natural_cmp("a", "a0"), Ordering::Less);
        assert_eq!(natural_cmp("x9y", "x10"), Ordering::Less);
        assert_eq!(natural_cmp("same", "same"), Ordering::Equal);
        // Leading zeros decide only between names that are otherwise equal: the first
        // run of each was compared by its zeros at once.
        assert_eq!(natural_cmp("a01b3", "a1b10"), Ordering::Less);
        assert_eq!(natural_cmp("a1b10", "a01b3"), Ordering::Greater);
        assert_eq!(natural_cmp("a01b1", "a1b01"), Ordering::Greater);
        assert_eq!(natural_cmp("a1", "a01x"), Ordering::Less);
        assert_eq!(
            natural_cmp("99999999999999999999999", "100000000000000000000000"),
            Ordering::Less
        );
    }
}
