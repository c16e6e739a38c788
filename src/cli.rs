//! Command-line arguments (clap derive) and their conversion into a [`RenderConfig`].

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tensorheat::colour::Colormap;
use tensorheat::config::{parse_pair, FixedRange, Reduction, RenderConfig, Rgb, Size};

const EXAMPLES: &str = "\
Examples:
  tensorheat render model.safetensors -o out/
  tensorheat render model/ -o out/ --reduce absmax --max-size 512
  tensorheat render a.safetensors b.safetensors -o out/ --raw
  tensorheat list model.safetensors --json";

/// Turn the weights in .safetensors files into PNG heatmaps.
#[derive(Debug, Parser)]
#[command(name = "tensorheat", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render one PNG heatmap per tensor, plus manifest.json.
    #[command(after_help = EXAMPLES)]
    Render(RenderArgs),
    /// List the tensors in the inputs (reads headers only).
    List(ListArgs),
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
    /// Largest grid, N or HxW cells; blocks are ceil(rows/H) × ceil(cols/W).
    #[arg(long, value_name = "N|HxW", value_parser = pair, conflicts_with = "block")]
    pub max_size: Option<(NonZeroUsize, NonZeroUsize)>,
    /// Exact block size RxC (source rows × columns per pixel) instead of --max-size.
    #[arg(long, value_name = "RxC", value_parser = pair)]
    pub block: Option<(NonZeroUsize, NonZeroUsize)>,
    /// Use one block size, max(bh, bw), on both axes.
    #[arg(long)]
    pub keep_aspect: bool,
    /// Percentile of |cell| that sets the colour range (100 = full min/max).
    #[arg(long, value_name = "PCT", default_value_t = 99.5)]
    pub clip: f64,
    /// Fixed colour range instead of --clip, e.g. -0.05:0.05.
    #[arg(long, value_name = "LO:HI", allow_hyphen_values = true, value_parser = range)]
    pub range: Option<FixedRange>,
    /// Colormap (matplotlib name, case-insensitive, _r reverses). Default: RdBu_r for
    /// data of both signs, viridis otherwise.
    #[arg(long, value_name = "NAME", value_parser = colormap)]
    pub colormap: Option<Colormap>,
    /// Colour of cells with no finite value.
    #[arg(long, value_name = "#RRGGBB", default_value = "#ff00ff", value_parser = rgb)]
    pub nan_color: Rgb,
    /// Also write each grid as float32 .npy (the numbers behind the picture).
    #[arg(long)]
    pub raw: bool,
    /// Worker threads (default: all cores).
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<NonZeroUsize>,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
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

fn pair(s: &str) -> Result<(NonZeroUsize, NonZeroUsize), String> {
    parse_pair(s).map_err(|e| e.to_string())
}

fn range(s: &str) -> Result<FixedRange, String> {
    s.parse().map_err(|e: tensorheat::Error| e.to_string())
}

fn colormap(s: &str) -> Result<Colormap, String> {
    s.parse().map_err(|e: tensorheat::Error| e.to_string())
}

fn rgb(s: &str) -> Result<Rgb, String> {
    s.parse().map_err(|e: tensorheat::Error| e.to_string())
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
            Command::List(_) => unreachable!("parsed render"),
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
        assert!(render(&["-q"]).unwrap().quiet);
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
        ] {
            assert!(render(bad).is_err(), "{bad:?}");
        }
    }
}
