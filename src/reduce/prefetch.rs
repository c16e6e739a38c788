//! Where the kernels' software prefetches put each row's bytes, and how far ahead.
//!
//! A group of up to 32 rows is read a chunk at a time down its rows; rows whose length is
//! a multiple of 4 KiB (every LLM layer in BF16 or F32, 4096-wide ones in F8) then map
//! their chunks to one set of an 8-way L1, so lines prefetched into L1 for 32 rows evict
//! each other before they are read. Intel's Xeons measured best with `prefetcht0` a few
//! chunks ahead anyway (into L2 only, or further ahead, was the same or slower: F8 −30%
//! at 1 KiB ahead into L2). AMD's Zen 4 measured best with `prefetcht2` (into L2 only)
//! four times as far ahead: one core reducing a 16384 × 4096 tensor at `--max-size 256`
//! 8.7 → 13.6 GB/s (BF16), 7.1 → 10.8 (F32), 7.9 → 11.5 (F8), the AVX2 kernel 7.4 → 8.9
//! (BF16) and 7.6 → 10.6 (F32); no change in bands of 4 rows. So AMD CPUs take that, and
//! others keep the first. `TENSORHEAT_PREFETCH=l1` or `=l2` chooses either on any CPU,
//! to compare them on one machine.

use std::sync::OnceLock;

/// One of the two ways of prefetching, chosen once per process ([`Prefetch::get`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Prefetch {
    /// `prefetcht0` at the kernels' base distance.
    L1,
    /// `prefetcht2` at [`FAR`] times that distance.
    L2,
}

/// How many times further ahead [`Prefetch::L2`] asks for bytes than [`Prefetch::L1`].
const FAR: usize = 4;

impl Prefetch {
    /// `TENSORHEAT_PREFETCH` (`l1` or `l2`) if set to one of those, otherwise
    /// [`Prefetch::L2`] on AMD CPUs and [`Prefetch::L1`] on others.
    pub(super) fn get() -> Prefetch {
        static CHOSEN: OnceLock<Prefetch> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let var = std::env::var("TENSORHEAT_PREFETCH").unwrap_or_default();
            Prefetch::parse(&var).unwrap_or_else(|| Prefetch::for_vendor(super::cpu::vendor()))
        })
    }

    /// The setting's value (`l1` or `l2`, any case), or `None`.
    fn parse(s: &str) -> Option<Prefetch> {
        match s.to_ascii_lowercase().as_str() {
            "l1" => Some(Prefetch::L1),
            "l2" => Some(Prefetch::L2),
            _ => None,
        }
    }

    /// The default for a CPU of this `cpuid` vendor string.
    fn for_vendor(vendor: &str) -> Prefetch {
        if vendor == "AuthenticAMD" {
            Prefetch::L2
        } else {
            Prefetch::L1
        }
    }

    /// A kernel's base prefetch distance (in chunks or bytes), scaled for this way.
    pub(super) fn reach(self, base: usize) -> usize {
        match self {
            Prefetch::L1 => base,
            Prefetch::L2 => FAR * base,
        }
    }

    /// Asks for the line holding `p`, which need not be a valid address (a prefetch is
    /// only a hint: it reads nothing and cannot fault).
    #[inline(always)]
    pub(super) fn line(self, p: *const u8) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T2};
            // SAFETY: see above.
            unsafe {
                match self {
                    Prefetch::L1 => _mm_prefetch::<_MM_HINT_T0>(p.cast()),
                    Prefetch::L2 => _mm_prefetch::<_MM_HINT_T2>(p.cast()),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amd_prefetches_into_l2_and_further_others_into_l1() {
        assert_eq!(Prefetch::for_vendor("AuthenticAMD"), Prefetch::L2);
        assert_eq!(Prefetch::for_vendor("GenuineIntel"), Prefetch::L1);
        assert_eq!(Prefetch::for_vendor(""), Prefetch::L1);
        assert_eq!(Prefetch::L1.reach(256), 256);
        assert_eq!(Prefetch::L2.reach(256), 1024);
    }

    #[test]
    fn the_setting_names_either_way_in_any_case() {
        assert_eq!(Prefetch::parse("l1"), Some(Prefetch::L1));
        assert_eq!(Prefetch::parse("L2"), Some(Prefetch::L2));
        assert_eq!(Prefetch::parse(""), None);
        assert_eq!(Prefetch::parse("l3"), None);
    }
}
