//! The `tensorheat` binary: parse arguments, run the library, report, pick the exit code.

#[macro_use]
mod diag;
mod cli;
mod commands;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, ListArgs, MergeArgs, RenderArgs};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use tensorheat::model::{Access, Model};
use tensorheat::render::{Progress, TensorOutcome};

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(&e),
    };
    let result = match cli.command {
        Command::Render(args) => run_render(&args),
        Command::List(args) => run_list(&args),
        Command::Merge(args) => run_merge(&args),
        Command::Gallery(args) => commands::run_gallery(&args),
        Command::Completions(args) => commands::run_completions(&args),
        Command::Man(args) => commands::run_man(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            // An option value that cannot be used is a usage error; anything else (a
            // folder that cannot be read, a full disk) failed at run time.
            let usage = matches!(e.downcast_ref(), Some(tensorheat::Error::Option(_)));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// Asks glibc's allocator to keep freed memory for reuse instead of handing it back to
/// the kernel. A render allocates and frees a few megabytes per tensor (its grid, the
/// PNG's pixels and the encoder's buffers), and by default glibc unmaps or trims them,
/// so every tensor faulted fresh zeroed pages in again: ~30,000 page faults and ~8% of
/// the time of a render of a 2 GiB FP8 model with default options. (Blocks of 32 MiB
/// and more are still mapped on their own, and a heap still shrinks when 256 MiB at
/// its top are free.)
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets the allocator's parameters, before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// What clap's own exit would do for `e` (help or version on stdout and 0; a usage error
/// on stderr and 2), except that a failed write to stdout (`--help > /dev/full`) is an
/// error and 1 rather than 0.
fn parse_failure(e: &clap::Error) -> ExitCode {
    let printed = e.print().and_then(|()| io::stdout().flush());
    match printed {
        Err(w) if e.exit_code() == 0 && w.kind() != io::ErrorKind::BrokenPipe => {
            error!("stdout: {w}");
            ExitCode::from(1)
        }
        _ => ExitCode::from(e.exit_code().clamp(0, 255) as u8),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn run_render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let config = args.config();
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        pool = pool.num_threads(n.get());
    }
    let bar = Bar::new(args.quiet, args.verbose);
    let reports = pool
        .build()?
        .install(|| tensorheat::render_with(&args.inputs, &args.output, &config, &bar))?;
    bar.pb.finish_and_clear();
    let mut failed = false;
    for r in &reports {
        for w in &r.warnings {
            if !args.quiet {
                warning!("{w}");
            }
        }
        for e in &r.manifest.errors {
            error!("{}", e.message);
        }
        failed |= r.failed();
        if !args.quiet {
            note!(
                "{}: rendered {}, skipped {}, {} -> {}",
                r.input.display(),
                diag::counted(r.manifest.tensors.len(), "tensor"),
                r.manifest.skipped.len(),
                diag::counted(r.manifest.errors.len(), "error"),
                r.out_dir.display()
            );
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One row of `list` output.
#[derive(serde::Serialize)]
struct ListRow {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    /// The input as given (with several, `source` alone can be ambiguous: every model
    /// has its `model-00001-of-00002.safetensors`).
    input: String,
    source: String,
    offset: u64,
    bytes: u64,
}

#[derive(serde::Serialize)]
struct ListJson {
    tensors: Vec<ListRow>,
    total_params: u128,
    total_bytes: u64,
}

/// Progress on stderr: a bar with bytes, tensors and ETA on a terminal; with `-v`, one
/// line per tensor.
struct Bar {
    pb: ProgressBar,
    verbose: bool,
    tensors: std::sync::atomic::AtomicUsize,
}

impl Bar {
    fn new(quiet: bool, verbose: bool) -> Bar {
        let pb = if quiet || !io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let style = ProgressStyle::with_template(
                "{bar:30} {binary_bytes}/{binary_total_bytes} {msg} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(0).with_style(style)
        };
        Bar {
            pb,
            verbose: verbose && !quiet,
            tensors: Default::default(),
        }
    }
}

impl Progress for Bar {
    fn input_started(&self, _input: &Path, tensors: usize, bytes: u64) {
        self.pb.inc_length(bytes);
        self.tensors
            .fetch_add(tensors, std::sync::atomic::Ordering::Relaxed);
    }

    fn tensor_finished(&self, name: &str, bytes: u64, outcome: TensorOutcome<'_>) {
        self.pb.inc(bytes);
        self.pb.set_message(format!(
            "{} left",
            diag::counted(
                self.tensors
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed)
                    .saturating_sub(1),
                "tensor"
            )
        ));
        if self.verbose {
            let line = match outcome {
                TensorOutcome::Rendered(f) => format!("tensorheat: rendered {name} -> {f}"),
                TensorOutcome::Reused(f) => format!("tensorheat: kept {name} -> {f}"),
                TensorOutcome::Failed(_) => format!("tensorheat: failed {name}"),
            };
            // (A reused file name comes from the record file, so it is escaped too.)
            self.pb.suspend(|| eprintln!("{}", diag::printable(&line)));
        }
    }
}

fn run_merge(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let mut dirs = vec![args.dir.clone()];
    let mut failed = false;
    if !has_partials(&args.dir) {
        let mut subs = Vec::new();
        for e in std::fs::read_dir(&args.dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.dir.display()))?
            .flatten()
        {
            let (path, link) = (e.path(), e.file_type().is_ok_and(|t| t.is_symlink()));
            if !path.is_dir() || !has_partials(&path) {
                continue;
            }
            if link {
                // `render` does not write into a linked `DIR/<stem>/` either: merging
                // there would write outside DIR.
                error!("{}: is a symbolic link; not merged", path.display());
                failed = true;
            } else {
                subs.push(path);
            }
        }
        subs.sort();
        dirs = subs;
    }
    if dirs.is_empty() && !failed {
        error!(
            "{}: no manifest.K-of-N.json files to merge",
            args.dir.display()
        );
        return Ok(ExitCode::from(1));
    }
    for dir in dirs {
        match tensorheat::manifest::merge_partials(&dir) {
            Ok(Some(m)) if m.missing.is_empty() => {
                // The joined manifest's errors, which the workers may have printed on
                // other machines.
                for e in &m.manifest.errors {
                    error!("{}", e.message);
                }
                let errors = m.manifest.errors.len();
                failed |= errors > 0;
                if !args.quiet {
                    note!(
                        "{}: merged {}, {}, {}{}",
                        dir.display(),
                        diag::counted(m.parts, "partition"),
                        diag::counted(m.manifest.tensors.len(), "tensor"),
                        diag::counted(errors, "error"),
                        if errors > 0 {
                            " (in manifest.json)"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(Some(m)) => {
                let missing: Vec<String> = m
                    .missing
                    .iter()
                    .map(|k| format!("{k}/{}", m.parts))
                    .collect();
                error!(
                    "{}: missing partitions {}; manifest.json not written",
                    dir.display(),
                    missing.join(", ")
                );
                failed = true;
            }
            Ok(None) => {}
            Err(e) => {
                error!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn has_partials(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("manifest.") && n.contains("-of-") && n.ends_with(".json")
        })
    })
}

fn run_list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let matcher = args.select.selection().compile()?;
    let mut rows = Vec::new();
    let mut params: u128 = 0;
    let mut failed = false;
    for input in &args.inputs {
        let model = match Model::open(input, Access::HeaderOnly) {
            Ok(m) => m,
            Err(e) => {
                error!("{e}");
                failed = true;
                continue;
            }
        };
        for e in &model.errors {
            error!("{e}");
            failed = true;
        }
        for w in &model.warnings {
            warning!("{w}");
        }
        for &r in &model.tensors {
            let (shard, t) = model.tensor(r);
            if !matcher.matches(&t.name, t.dtype.name()) {
                continue;
            }
            params += t.numel() as u128;
            rows.push(ListRow {
                name: t.name.clone(),
                dtype: t.dtype.name().to_owned(),
                shape: t.shape.clone(),
                input: input.display().to_string(),
                source: shard.file_name(),
                offset: (8 + shard.header.header_len + t.data_offsets.0) as u64,
                bytes: t.nbytes() as u64,
            });
        }
    }
    let total_bytes = rows.iter().map(|r| r.bytes).sum();
    // Made in memory, then written as the other commands' output is (an io::Error
    // wrapped in serde_json's error would also hide a broken pipe from the quiet exit).
    let text = if args.json {
        let json = ListJson {
            tensors: rows,
            total_params: params,
            total_bytes,
        };
        let mut text = serde_json::to_vec_pretty(&json)?;
        text.push(b'\n');
        text
    } else {
        let mut text = Vec::new();
        print_table(&mut text, &rows, params, total_bytes)?;
        text
    };
    commands::write_stdout(&text)?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(out: &mut impl Write, rows: &[ListRow], params: u128, bytes: u64) -> io::Result<()> {
    let shape = |s: &[usize]| {
        let dims: Vec<String> = s.iter().map(ToString::to_string).collect();
        format!("[{}]", dims.join(", "))
    };
    let w_name = rows
        .iter()
        .map(|r| diag::printable(&r.name).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_shape = rows
        .iter()
        .map(|r| shape(&r.shape).len())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(
        out,
        "{:<w_name$}  {:<7}  {:<w_shape$}  {:>14}  {:>14}  shard",
        "name", "dtype", "shape", "params", "bytes"
    )?;
    for r in rows {
        let numel: u128 = r.shape.iter().map(|&d| d as u128).product();
        writeln!(
            out,
            "{:<w_name$}  {:<7}  {:<w_shape$}  {:>14}  {:>14}  {}",
            diag::printable(&r.name),
            diag::printable(&r.dtype),
            shape(&r.shape),
            numel,
            r.bytes,
            diag::printable(&r.source)
        )?;
    }
    let mut by_dtype: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for r in rows {
        let e = by_dtype.entry(r.dtype.as_str()).or_default();
        e.0 += 1;
        e.1 += r.bytes;
    }
    for (dtype, (n, b)) in &by_dtype {
        let dtype = diag::printable(dtype);
        let n = diag::counted(*n, "tensor");
        writeln!(out, "{dtype}: {n}, {b} bytes ({})", human(*b))?;
    }
    writeln!(
        out,
        "total: {}, {params} params, {bytes} bytes ({})",
        diag::counted(rows.len(), "tensor"),
        human(bytes)
    )
}

fn human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
