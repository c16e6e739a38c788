//! What the kernels need to know about the CPU beyond its features: its vendor, where
//! the same instructions measured differently (`prefetch.rs`, and [`is_amd`]'s callers).

use std::sync::OnceLock;

/// The CPU's vendor string from `cpuid` ("AuthenticAMD", "GenuineIntel"; empty off
/// x86-64), read once.
pub(super) fn vendor() -> &'static str {
    static VENDOR: OnceLock<String> = OnceLock::new();
    VENDOR.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let r = std::arch::x86_64::__cpuid(0);
            let bytes: Vec<u8> = [r.ebx, r.edx, r.ecx]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        #[cfg(not(target_arch = "x86_64"))]
        String::new()
    })
}

/// Whether the CPU is AMD's.
#[cfg(target_arch = "x86_64")]
pub(super) fn is_amd() -> bool {
    vendor() == "AuthenticAMD"
}
