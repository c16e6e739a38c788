//! Diagnostics on stderr: `tensorheat: error: ...` and `tensorheat: warning: ...`.
//!
//! The `error:` and `warning:` words are coloured (bold red, bold yellow) only when stderr
//! is a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>), so logs,
//! pipes and scripts always get plain text.

use std::borrow::Cow;
use std::fmt::Display;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// Prints `tensorheat: error: <format!(...)>` on stderr.
macro_rules! error {
    ($($arg:tt)*) => {
        $crate::diag::print($crate::diag::Level::Error, format_args!($($arg)*))
    };
}

/// Prints `tensorheat: warning: <format!(...)>` on stderr.
macro_rules! warning {
    ($($arg:tt)*) => {
        $crate::diag::print($crate::diag::Level::Warning, format_args!($($arg)*))
    };
}

/// Prints `tensorheat: <format!(...)>` on stderr (through [`printable`]): a report of
/// what a command did, with the paths and names in it escaped like a diagnostic's.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::diag::note(format_args!($($arg)*))
    };
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Worth knowing, not a failure.
    Warning,
}

/// Prints one diagnostic line on stderr (through [`printable`]).
pub fn print(level: Level, message: impl Display) {
    let message = message.to_string();
    eprintln!("{}{}", prefix(level, colour()), printable(&message));
}

/// Prints one report line on stderr (see [`note!`]).
pub fn note(message: impl Display) {
    eprintln!("tensorheat: {}", printable(&message.to_string()));
}

/// `1 tensor`, `2 tensors`.
pub fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `s` with control characters (`\u{1b}`, `\n`) and bidirectional-text controls
/// (`\u{202e}`) escaped: a name or path from a file must not move the cursor, recolour
/// the terminal or reorder the line it is printed on.
pub fn printable(s: &str) -> Cow<'_, str> {
    let bidi = |c: char| matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(|c| c.is_control() || bidi(c)) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else if bidi(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// `tensorheat: error: ` or `tensorheat: warning: `, with ANSI colour when `colour`.
pub fn prefix(level: Level, colour: bool) -> String {
    let (word, sgr) = match level {
        Level::Error => ("error:", "1;31"),
        Level::Warning => ("warning:", "1;33"),
    };
    if colour {
        format!("tensorheat: \x1b[{sgr}m{word}\x1b[0m ")
    } else {
        format!("tensorheat: {word} ")
    }
}

/// Whether diagnostics are coloured (decided once per run).
fn colour() -> bool {
    static COLOUR: OnceLock<bool> = OnceLock::new();
    *COLOUR.get_or_init(|| {
        wants_colour(
            std::env::var_os("NO_COLOR").as_deref(),
            std::io::stderr().is_terminal(),
        )
    })
}

/// The rule: a terminal, and `NO_COLOR` unset or empty.
fn wants_colour(no_color: Option<&std::ffi::OsStr>, terminal: bool) -> bool {
    terminal && !matches!(no_color, Some(v) if !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(wants_colour(None, true));
        assert!(wants_colour(Some(OsStr::new("")), true));
        assert!(!wants_colour(Some(OsStr::new("1")), true));
        assert!(!wants_colour(None, false));
    }

    #[test]
    fn prefixes_are_plain_or_ansi() {
        assert_eq!(prefix(Level::Error, false), "tensorheat: error: ");
        assert_eq!(prefix(Level::Warning, false), "tensorheat: warning: ");
        assert_eq!(
            prefix(Level::Error, true),
            "tensorheat: \x1b[1;31merror:\x1b[0m "
        );
        assert_eq!(
            prefix(Level::Warning, true),
            "tensorheat: \x1b[1;33mwarning:\x1b[0m "
        );
    }
}
