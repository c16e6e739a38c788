//! The `tensorheat` binary: parse arguments, run the library, report, pick the exit code.

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, ListArgs, RenderArgs};
use tensorheat::model::{Access, Model};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Render(args) => run_render(&args),
        Command::List(args) => run_list(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tensorheat: error: {e:#}");
            ExitCode::from(2)
        }
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
    let reports = pool
        .build()?
        .install(|| tensorheat::render(&args.inputs, &args.output, &config))?;
    let mut failed = false;
    for r in &reports {
        for w in &r.warnings {
            if !args.quiet {
                eprintln!("tensorheat: warning: {w}");
            }
        }
        for e in &r.manifest.errors {
            eprintln!("tensorheat: error: {}", e.message);
        }
        failed |= r.failed();
        if !args.quiet {
            eprintln!(
                "tensorheat: {}: rendered {} tensors, skipped {}, {} errors -> {}",
                r.input.display(),
                r.manifest.tensors.len(),
                r.manifest.skipped.len(),
                r.manifest.errors.len(),
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

fn run_list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let mut params: u128 = 0;
    let mut failed = false;
    for input in &args.inputs {
        let model = match Model::open(input, Access::HeaderOnly) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("tensorheat: error: {e}");
                failed = true;
                continue;
            }
        };
        for e in &model.errors {
            eprintln!("tensorheat: error: {e}");
            failed = true;
        }
        for w in &model.warnings {
            eprintln!("tensorheat: warning: {w}");
        }
        for &r in &model.tensors {
            let (shard, t) = model.tensor(r);
            params += t.numel() as u128;
            rows.push(ListRow {
                name: t.name.clone(),
                dtype: t.dtype.name().to_owned(),
                shape: t.shape.clone(),
                source: shard.file_name(),
                offset: (8 + shard.header.header_len + t.data_offsets.0) as u64,
                bytes: t.nbytes() as u64,
            });
        }
    }
    let total_bytes = rows.iter().map(|r| r.bytes).sum();
    let out = io::stdout();
    let mut out = io::BufWriter::new(out.lock());
    if args.json {
        let json = ListJson {
            tensors: rows,
            total_params: params,
            total_bytes,
        };
        serde_json::to_writer_pretty(&mut out, &json)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &rows, params, total_bytes)?;
    }
    out.flush()?;
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
        .map(|r| r.name.chars().count())
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
            r.name,
            r.dtype,
            shape(&r.shape),
            numel,
            r.bytes,
            r.source
        )?;
    }
    let mut by_dtype: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for r in rows {
        let e = by_dtype.entry(r.dtype.as_str()).or_default();
        e.0 += 1;
        e.1 += r.bytes;
    }
    for (dtype, (n, b)) in &by_dtype {
        writeln!(out, "{dtype}: {n} tensors, {b} bytes ({})", human(*b))?;
    }
    writeln!(
        out,
        "total: {} tensors, {params} params, {bytes} bytes ({})",
        rows.len(),
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
