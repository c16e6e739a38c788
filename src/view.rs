//! From an N-D tensor to a rows × cols matrix and an integer block grid.
//!
//! The view is numpy's `reshape(-1, shape[-1])`. Blocks have integer sizes, so every
//! element lands in exactly one grid cell and no fractional resampling can create
//! alternating-stripe artefacts; the last row and column of cells may be partial.

use crate::config::Size;

/// Rows and columns of the 2-D view of a tensor of `shape`.
///
/// Rank 0 is 1 × 1, rank 1 `[n]` is 1 × n, higher ranks fold all leading dimensions
/// into rows. Callers skip tensors with zero elements before calling this.
pub fn view(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        None => (1, 1),
        Some((&cols, lead)) => (lead.iter().product(), cols),
    }
}

/// The block grid laid over a rows × cols view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Rows of the view.
    pub rows: usize,
    /// Columns of the view.
    pub cols: usize,
    /// Block height (source rows per grid row).
    pub bh: usize,
    /// Block width (source columns per grid column).
    pub bw: usize,
}

impl Geometry {
    /// Block sizes for a view of `rows × cols` (both ≥ 1) under `size`.
    ///
    /// `MaxSize(h, w)` gives `bh = ceil(rows / h)`, `bw = ceil(cols / w)`; `Block(r, c)`
    /// uses them as they are; `keep_aspect` makes both `max(bh, bw)`.
    pub fn new(rows: usize, cols: usize, size: Size, keep_aspect: bool) -> Geometry {
        let (mut bh, mut bw) = match size {
            Size::MaxSize(h, w) => (rows.div_ceil(h.get()), cols.div_ceil(w.get())),
            Size::Block(r, c) => (r.get(), c.get()),
        };
        if keep_aspect {
            let b = bh.max(bw);
            (bh, bw) = (b, b);
        }
        Geometry {
            rows,
            cols,
            bh: bh.max(1),
            bw: bw.max(1),
        }
    }

    /// Grid height: `ceil(rows / bh)`.
    pub fn grid_h(&self) -> usize {
        self.rows.div_ceil(self.bh)
    }

    /// Grid width: `ceil(cols / bw)`.
    pub fn grid_w(&self) -> usize {
        self.cols.div_ceil(self.bw)
    }

    /// The source rows covered by grid row `i`.
    pub fn row_range(&self, i: usize) -> std::ops::Range<usize> {
        i * self.bh..((i + 1) * self.bh).min(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn views_follow_numpy_reshape() {
        assert_eq!(view(&[]), (1, 1));
        assert_eq!(view(&[7]), (1, 7));
        assert_eq!(view(&[3, 4]), (3, 4));
        assert_eq!(view(&[2, 3, 4, 5]), (24, 5));
    }

    #[test]
    fn max_size_uses_ceiling_blocks() {
        let g = Geometry::new(4096, 14336, Size::MaxSize(nz(1024), nz(1024)), false);
        assert_eq!((g.bh, g.bw, g.grid_h(), g.grid_w()), (4, 14, 1024, 1024));
        let g = Geometry::new(1000, 3000, Size::MaxSize(nz(1024), nz(1024)), false);
        assert_eq!((g.bh, g.bw, g.grid_h(), g.grid_w()), (1, 3, 1000, 1000));
        let g = Geometry::new(129280, 7168, Size::MaxSize(nz(1024), nz(1024)), true);
        assert_eq!((g.bh, g.bw, g.grid_h(), g.grid_w()), (127, 127, 1018, 57));
    }

    #[test]
    fn explicit_blocks_leave_partial_edges() {
        let g = Geometry::new(10, 7, Size::Block(nz(3), nz(2)), false);
        assert_eq!((g.grid_h(), g.grid_w()), (4, 4));
        assert_eq!(g.row_range(3), 9..10);
    }
}
