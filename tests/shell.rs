//! Shell comforts: completion scripts, man pages, `--version`, `--help`, and plain
//! (uncoloured) diagnostics off a terminal or with `NO_COLOR`.

mod common;

use common::{bin, fixture};
use predicates::prelude::*;

fn stdout_of(args: &[&str]) -> String {
    let out = bin().args(args).assert().success().get_output().clone();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn completions_for_each_shell_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.len() > 500, "{shell}: {} bytes", script.len());
        for word in ["render", "list", "gallery", "max-size", "colormap"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    bin()
        .args(["completions", "tcsh"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value"));
}

#[test]
fn man_pages_come_from_the_same_definition() {
    let page = stdout_of(&["man"]);
    assert!(page.starts_with(".TH") || page.starts_with(".ie"), "{page}");
    assert!(page.contains(".TH tensorheat 1"));
    assert!(page.contains("render"));
    assert!(page.contains("gallery"));
    assert!(page.contains(".SH VERSION"), "{page}");
    let render = stdout_of(&["man", "render"]);
    assert!(render.contains(".TH tensorheat-render 1"), "{render}");
    assert!(render.contains(env!("CARGO_PKG_VERSION")));
    assert!(render.contains("max\\-size") && render.contains("colormap"));
    // The examples are set line for line (`.nf`), each one whole, not filled into a
    // justified paragraph that broke them mid-comment.
    for p in [&page, &render] {
        let examples = p.split_once(".SH EXAMPLES\n.nf\n").expect(p).1;
        let examples = examples.split_once(".fi\n").expect(p).0;
        let lines: Vec<&str> = examples.lines().collect();
        assert!(
            lines.contains(&"tensorheat render model.safetensors \\-o out/"),
            "{p}"
        );
        assert!(
            lines.contains(
                &"tensorheat gallery out/          # rebuild out/index.html from out/manifest.json"
            ),
            "{p}"
        );
        assert!(!p.contains("EXTRA"), "{p}");
        // Where man-pages(7) puts them: after the options, before the VERSION section
        // that the top page ends with.
        let at = |s: &str| p.find(s).unwrap_or(p.len());
        assert!(at(".SH OPTIONS") < at(".SH EXAMPLES"), "{p}");
        assert!(at(".SH EXAMPLES") < at(".SH VERSION"), "{p}");
    }
    bin()
        .args(["man", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no command \"nope\""));

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    bin()
        .args(["man", "--out-dir"])
        .arg(&dir)
        .assert()
        .success()
        .stdout("");
    for page in ["tensorheat.1", "tensorheat-render.1", "tensorheat-list.1"] {
        let text = std::fs::read_to_string(dir.join(page)).expect(page);
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn version_and_help() {
    let v = stdout_of(&["--version"]);
    assert_eq!(
        v.trim(),
        format!("tensorheat {}", env!("CARGO_PKG_VERSION"))
    );
    let help = stdout_of(&["--help"]);
    for word in [
        "render",
        "list",
        "gallery",
        "completions",
        "man",
        "Examples:",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
    assert!(stdout_of(&["render", "--help"]).contains("Examples:"));
}

fn assert_plain(stderr: &[u8]) {
    let text = String::from_utf8_lossy(stderr);
    assert!(text.starts_with("tensorheat: error: "), "{text}");
    assert!(!text.contains('\x1b'), "escape codes in {text:?}");
}

#[test]
fn diagnostics_are_plain_off_a_terminal_and_with_no_color() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.safetensors");
    // stderr is a pipe under the test harness: never coloured, whatever NO_COLOR says.
    for no_color in [None, Some(""), Some("1")] {
        let mut render = bin();
        render
            .arg("render")
            .arg(&missing)
            .arg("-o")
            .arg(tmp.path().join("out"));
        let mut gallery = bin();
        gallery.arg("gallery").arg(tmp.path().join("nowhere"));
        let mut list = bin();
        list.arg("list").arg(&missing);
        for cmd in [&mut render, &mut gallery, &mut list] {
            match no_color {
                Some(v) => cmd.env("NO_COLOR", v),
                None => cmd.env_remove("NO_COLOR"),
            };
            let out = cmd.assert().code(1).get_output().clone();
            assert_plain(&out.stderr);
        }
    }
    // Usage errors come from clap, which honours NO_COLOR and terminals the same way.
    let out = bin()
        .env("NO_COLOR", "1")
        .args(["render", "--reduce", "median"])
        .arg(fixture("gradients.safetensors"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\x1b'));
}
