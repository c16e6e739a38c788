//! Command-line arguments (clap derive) and their conversion into a [`RenderConfig`].

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tensorheat::colour::Colormap;
use tensorheat::config::{parse_pair, FixedRange, Fp8Mode, Reduction, RenderConfig, Rgb, Size};
use tensorheat::select::{Partition, Selection};

/// The examples `--help` ends with, and the man pages' EXAMPLES section.
pub const EXAMPLES: [&str; 7] = [
    "tensorheat render model.safetensors -o out/",
    "tensorheat render model/ -o out/ --reduce absmax --max-size 512",
    "tensorheat render a.safetensors b.safetensors -o out/ --raw",
    "tensorheat list model.safetensors --json",
    "tensorheat gallery out/          # rebuild out/index.html from out/manifest.json",
    "tensorheat completions bash > ~/.local/share/bash-completion/completions/tensorheat",
    "tensorheat man > tensorheat.1",
];

/// The examples as `--help` prints them, after a heading.
pub fn examples() -> String {
    let lines: Vec<String> = EXAMPLES.iter().map(|l| format!("  {l}")).collect();
    format!("Examples:\n{}", lines.join("\n"))
}

/// Turn the weights in .safetensors files into PNG heatmaps.
#[derive(Debug, Parser)]
#[command(name = "tensorheat", version, about, after_help = examples())]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render one PNG heatmap per tensor, plus manifest.json and index.html.
    #[command(after_help = examples())]
    Render(RenderArgs),
    /// List the tensors in the inputs (reads headers only).
    List(ListArgs),
    /// Join the partial manifests of `render --partition K/N` runs into manifest.json.
    Merge(MergeArgs),
    /// Rebuild DIR/index.html, the page to browse the heatmaps, from DIR/manifest.json.
    Gallery(GalleryArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a folder.
    Man(ManArgs),
}

/// Arguments of `gallery`.
#[derive(Debug, Args)]
pub struct GalleryArgs {
    /// A folder written by `render` (it holds manifest.json).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Print this command's page (e.g. render) instead of tensorheat(1).
    #[arg(value_name = "COMMAND", conflicts_with = "out_dir")]
    pub command: Option<String>,
    /// Write tensorheat.1 and a page per command (tensorheat-render.1, ...) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Tensor filters shared by `render` and `list`.
#[derive(Debug, Args, Default)]
pub struct SelectArgs {
    /// Only tensors whose name matches this glob (repeatable; any may match).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out tensors whose name matches this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Only tensors whose name this regular expression finds a match in.
    #[arg(long, value_name = "RE")]
    pub regex: Option<String>,
    /// Only these dtypes, comma-separated, any case (e.g. BF16,F32).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub dtype: Vec<String>,
}

impl SelectArgs {
    /// The library's selection.
    pub fn selection(&self) -> Selection {
        Selection {
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            regex: self.regex.clone(),
            dtypes: self.dtype.clone(),
        }
    }
}

/// Arguments of `merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The output folder of the partitioned runs (or a folder of such folders).
    pub dir: PathBuf,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Arguments of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Inputs: .safetensors files, model folders, or *.safetensors.index.json files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder (created if missing). With several inputs, each gets DIR/<stem>/.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// How a block of elements becomes one pixel (over finite members).
    #[arg(long, value_enum, default_value_t = ReduceArg::Mean)]
    pub reduce: ReduceArg,
    /// Largest grid, N or HxW cells; blocks are ceil(rows/H) × ceil(cols/W) [default:
    /// 1024].
    #[arg(long, value_name = "N|HxW", value_parser = pair, conflicts_with = "block")]
    pub max_size: Option<(NonZeroUsize, NonZeroUsize)>,
    /// Exact block size, RxC or N (N × N): source rows × columns per pixel, instead of
    /// --max-size.
    #[arg(long, value_name = "N|RxC", value_parser = pair)]
    pub block: Option<(NonZeroUsize, NonZeroUsize)>,
    /// Use one block size, max(bh, bw), on both axes (of --max-size; --block is exact).
    #[arg(long, conflicts_with = "block")]
    pub keep_aspect: bool,
    /// Percentile of |cell| that sets the colour range, 50 to 100 (100 = the extremes:
    /// ±max|cell|, or [0, max] for one-signed cells).
    #[arg(long, value_name = "PCT", default_value_t = 99.5)]
    pub clip: f64,
    /// Fixed colour range instead of --clip, e.g. -0.05:0.05.
    #[arg(
        long,
        value_name = "LO:HI",
        allow_hyphen_values = true,
        value_parser = range,
        conflicts_with = "clip"
    )]
    pub range: Option<FixedRange>,
    /// Colormap (matplotlib name, case-insensitive, _r reverses). Default: RdBu_r when a
    /// signed reduction (mean, max, min, sample) has cells of both signs (or --range
    /// spans 0), viridis otherwise.
    #[arg(long, value_name = "NAME", value_parser = colormap)]
    pub colormap: Option<Colormap>,
    /// Colour of cells with no finite value, as #RRGGBB (the # may be left out).
    #[arg(long, value_name = "#RRGGBB", default_value = "#ff00ff", value_parser = rgb)]
    pub nan_color: Rgb,
    /// Also write each grid as float32 .npy (the numbers behind the picture).
    #[arg(long)]
    pub raw: bool,
    /// FP8 weights with a <name>_scale_inv companion: multiply the block scales in
    /// (dequant) or show the stored codes (raw).
    #[arg(long, value_enum, default_value_t = Fp8Arg::Dequant)]
    pub fp8: Fp8Arg,
    /// Draw a one-pixel black line on the cells holding every N-th source row and
    /// column (e.g. 128, to compare patterns with quantisation tiles); not along an
    /// axis whose block is N/2 or more, where lines would cover the cells.
    #[arg(long, value_name = "N", value_parser = period)]
    pub tile_lines: Option<NonZeroUsize>,
    /// Worker threads, 1 to 1024 (default: all cores).
    #[arg(long, short = 'j', value_name = "N", value_parser = threads)]
    pub threads: Option<NonZeroUsize>,
    /// Print nothing but errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print one line per tensor.
    #[arg(short, long)]
    pub verbose: bool,
    /// Keep tensors an earlier run into DIR already rendered with the same options
    /// from the same file (resume an interrupted batch).
    #[arg(long)]
    pub skip_existing: bool,
    /// Render only worker K's share of N (1-based, N at most 4096) and write
    /// manifest.K-of-N.json; join the shares with `tensorheat merge DIR`.
    #[arg(long, value_name = "K/N", value_parser = partition)]
    pub partition: Option<Partition>,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// Arguments of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Inputs: .safetensors files, model folders, or *.safetensors.index.json files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// `--fp8` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fp8Arg {
    /// Real weights: codes times their block scales.
    Dequant,
    /// The codes as stored.
    Raw,
}

impl From<Fp8Arg> for Fp8Mode {
    fn from(a: Fp8Arg) -> Self {
        match a {
            Fp8Arg::Dequant => Fp8Mode::Dequant,
            Fp8Arg::Raw => Fp8Mode::Raw,
        }
    }
}

/// `--reduce` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReduceArg {
    /// Arithmetic mean.
    Mean,
    /// Root mean square.
    Rms,
    /// Largest magnitude.
    Absmax,
    /// Largest value.
    Max,
    /// Smallest value.
    Min,
    /// Population standard deviation.
    Std,
    /// First finite element of the block.
    Sample,
}

impl From<ReduceArg> for Reduction {
    fn from(r: ReduceArg) -> Self {
        match r {
            ReduceArg::Mean => Reduction::Mean,
            ReduceArg::Rms => Reduction::Rms,
            ReduceArg::Absmax => Reduction::AbsMax,
            ReduceArg::Max => Reduction::Max,
            ReduceArg::Min => Reduction::Min,
            ReduceArg::Std => Reduction::Std,
            ReduceArg::Sample => Reduction::Sample,
        }
    }
}

/// An option value's error without the library's "invalid option: ", which clap's
/// "invalid value '...' for '--...'" before it already says.
fn reason(e: tensorheat::Error) -> String {
    match e {
        tensorheat::Error::Option(m) => m,
        e => e.to_string(),
    }
}

fn pair(s: &str) -> Result<(NonZeroUsize, NonZeroUsize), String> {
    parse_pair(s).map_err(reason)
}

fn range(s: &str) -> Result<FixedRange, String> {
    s.parse().map_err(reason)
}

fn colormap(s: &str) -> Result<Colormap, String> {
    s.parse().map_err(reason)
}

fn period(s: &str) -> Result<NonZeroUsize, String> {
    // (clap's message already quotes the value.)
    s.parse()
        .map_err(|_| "must be a whole number from 1 up".to_owned())
}

/// The most worker threads `--threads` takes: more than any machine's cores, and few
/// enough to start (`-j 100000` spent minutes creating threads before any work).
const MAX_THREADS: usize = 1024;

fn threads(s: &str) -> Result<NonZeroUsize, String> {
    s.parse()
        .ok()
        .filter(|n: &NonZeroUsize| n.get() <= MAX_THREADS)
        .ok_or_else(|| format!("{s:?} is not a number of threads from 1 to {MAX_THREADS}"))
}

fn partition(s: &str) -> Result<Partition, String> {
    s.parse().map_err(reason)
}

fn rgb(s: &str) -> Result<Rgb, String> {
    s.parse().map_err(reason)
}

impl RenderArgs {
    /// The library configuration these arguments describe.
    pub fn config(&self) -> RenderConfig {
        let size = match (self.block, self.max_size) {
            (Some((r, c)), _) => Size::Block(r, c),
            (None, Some((h, w))) => Size::MaxSize(h, w),
            (None, None) => Size::default(),
        };
        RenderConfig {
            reduce: self.reduce.into(),
            size,
            keep_aspect: self.keep_aspect,
            clip: self.clip,
            range: self.range,
            colormap: self.colormap,
            nan_color: self.nan_color,
            raw: self.raw,
            select: self.select.selection(),
            fp8: self.fp8.into(),
            tile_lines: self.tile_lines,
            partition: self.partition,
            skip_existing: self.skip_existing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn render(args: &[&str]) -> Result<RenderArgs, clap::Error> {
        let mut v = vec!["tensorheat", "render", "m.safetensors", "-o", "out"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v)?.command {
            Command::Render(r) => Ok(r),
            _ => unreachable!("parsed render"),
        }
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_library() {
        assert_eq!(render(&[]).unwrap().config(), RenderConfig::default());
    }

    #[test]
    fn each_flag_reaches_the_config() {
        let c = render(&["--reduce", "absmax"]).unwrap().config();
        assert_eq!(c.reduce, Reduction::AbsMax);
        let c = render(&["--max-size", "64x32"]).unwrap().config();
        assert_eq!(
            c.size,
            Size::MaxSize(64.try_into().unwrap(), 32.try_into().unwrap())
        );
        let c = render(&["--block", "128x1"]).unwrap().config();
        assert_eq!(
            c.size,
            Size::Block(128.try_into().unwrap(), 1.try_into().unwrap())
        );
        assert!(render(&["--keep-aspect"]).unwrap().config().keep_aspect);
        assert_eq!(render(&["--clip", "100"]).unwrap().config().clip, 100.0);
        let c = render(&["--range", "-1:2"]).unwrap().config();
        assert_eq!(c.range, Some(FixedRange { lo: -1.0, hi: 2.0 }));
        let c = render(&["--colormap", "Magma_R"]).unwrap().config();
        assert_eq!(c.colormap.unwrap().name(), "magma_r");
        let c = render(&["--nan-color", "#000000"]).unwrap().config();
        assert_eq!(c.nan_color, Rgb([0, 0, 0]));
        assert!(render(&["--raw"]).unwrap().config().raw);
        assert_eq!(
            render(&["--threads", "3"]).unwrap().threads,
            NonZeroUsize::new(3)
        );
        assert_eq!(
            render(&["-j", "1024"]).unwrap().threads,
            NonZeroUsize::new(1024)
        );
        assert!(render(&["-q"]).unwrap().quiet);
        assert!(render(&["-v"]).unwrap().verbose);
        assert_eq!(
            render(&["--fp8", "raw"]).unwrap().config().fp8,
            Fp8Mode::Raw
        );
        let c = render(&["--tile-lines", "128"]).unwrap().config();
        assert_eq!(c.tile_lines, NonZeroUsize::new(128));
        assert!(render(&["--skip-existing"]).unwrap().config().skip_existing);
        let c = render(&["--partition", "2/3"]).unwrap().config();
        assert_eq!(c.partition, Some(Partition { k: 2, n: 3 }));
        let c = render(&["--include", "a.*", "--include", "b", "--exclude", "*.bias"])
            .unwrap()
            .config();
        assert_eq!(c.select.include, ["a.*", "b"]);
        assert_eq!(c.select.exclude, ["*.bias"]);
        let c = render(&["--regex", "proj", "--dtype", "bf16,F32"])
            .unwrap()
            .config();
        assert_eq!(c.select.regex.as_deref(), Some("proj"));
        assert_eq!(c.select.dtypes, ["bf16", "F32"]);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--max-size", "0"][..],
            &["--block", "2x"],
            &["--block", "2", "--max-size", "3"],
            &["--range", "3:1"],
            &["--colormap", "jet2"],
            &["--nan-color", "red"],
            &["--reduce", "median"],
            &["--threads", "0"],
            &["--threads", "1025"],
            &["--partition", "3/2"],
            &["--partition", "1/4097"],
            &["--partition", "1"],
            &["-q", "-v"],
        ] {
            assert!(render(bad).is_err(), "{bad:?}");
        }
    }
}
