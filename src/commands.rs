//! The small subcommands: `gallery` (rebuild `index.html`), `completions` and `man`.
//!
//! Completion scripts and man pages are generated from the same clap definition as the
//! parser ([`Cli`]), so they cannot drift from the real options.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, GalleryArgs, ManArgs};

/// `tensorheat gallery DIR`: rewrites `DIR/index.html` from `DIR/manifest.json`.
pub fn run_gallery(args: &GalleryArgs) -> anyhow::Result<ExitCode> {
    match tensorheat::gallery::rebuild_gallery(&args.dir) {
        Ok(m) => {
            if !args.quiet {
                note!(
                    "{}: gallery of {}",
                    args.dir.join(tensorheat::gallery::FILE_NAME).display(),
                    crate::diag::counted(m.tensors.len(), "tensor")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            error!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `tensorheat completions SHELL`: the completion script on stdout.
pub fn run_completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "tensorheat", &mut script);
    write_stdout(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// `tensorheat man [COMMAND] [--out-dir DIR]`: a man page on stdout, or every page
/// (`tensorheat.1`, `tensorheat-render.1`, ...) written into `DIR`.
pub fn run_man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    if let Some(dir) = &args.out_dir {
        tensorheat::output::create_folder(dir)?;
        let mut pages: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        pages.push(cmd);
        for page in pages {
            // Written as every output is (a temporary file renamed into place), which
            // replaces a link of that name instead of writing through it.
            let (name, roff) = man_page(page)?;
            tensorheat::output::write_atomic(dir, &name, &roff)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let page = match &args.command {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => {
                let known: Vec<&str> = cmd
                    .get_subcommands()
                    .filter(|s| !s.is_hide_set())
                    .map(clap::Command::get_name)
                    .collect();
                error!(
                    "no command {name:?} to show a man page for (known: {})",
                    known.join(", ")
                );
                return Ok(ExitCode::from(2));
            }
        },
    };
    write_stdout(&man_page(page)?.1)?;
    Ok(ExitCode::SUCCESS)
}

/// The file name and roff of `cmd`'s page, whose footer names the version, also for
/// subcommands (which have none). A page whose `--help` ends with the examples has them
/// in an EXAMPLES section set line for line: as clap_mangen's EXTRA paragraph they were
/// filled and justified, which broke the long ones mid-comment.
fn man_page(cmd: clap::Command) -> io::Result<(String, Vec<u8>)> {
    // (Compared with the text, so that another after-help would not be replaced.)
    let examples = cmd.get_after_help().map(ToString::to_string) == Some(crate::cli::examples());
    let man = clap_mangen::Man::new(cmd.after_help(None::<&str>))
        .source(format!("tensorheat {}", env!("CARGO_PKG_VERSION")));
    let mut roff = Vec::new();
    man.render(&mut roff)?;
    if examples {
        let mut section = b".SH EXAMPLES\n.nf\n".to_vec();
        for line in crate::cli::EXAMPLES {
            // Roff escapes: a backslash, every hyphen (a plain `-` may be set as a
            // hyphen, which breaks a pasted command), and a line that would start with
            // a control character.
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            let lead = if line.starts_with(['.', '\'']) {
                "\\&"
            } else {
                ""
            };
            section.extend_from_slice(format!("{lead}{line}\n").as_bytes());
        }
        section.extend_from_slice(b".fi\n");
        // Before the VERSION (and AUTHORS) that clap_mangen ends the page with, where
        // man-pages(7) puts EXAMPLES.
        let mark = b"\n.SH VERSION\n";
        let at = (roff.windows(mark.len()).position(|w| w == mark)).map_or(roff.len(), |i| i + 1);
        roff.splice(at..at, section);
    }
    Ok((man.get_filename(), roff))
}

/// Writes a command's output; a failure names stdout.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).context("stdout")?;
    out.flush().context("stdout")
}
