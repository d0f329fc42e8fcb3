//! Free-space allocation in extents.
//!
//! The free map is a set of free extents (`start -> len`), rebuilt at mount from the committed
//! tree (every node and every data extent the tree references is in use, everything else in
//! `[first_block, total_blocks)` is free). Nothing per block is kept, and nothing is written
//! for it: the tree is the only record of what is allocated, so the two can never disagree.
//!
//! Copy-on-write rule: a block freed while transaction N runs is still referenced by the last
//! durable commit, so it must not be reused until commit N is durable. Frees therefore go to
//! `pending`; `seal()` (when commit N takes its snapshot) moves them to `sealed`, and
//! `release_sealed()` (once commit N is durable) returns them to the free map.

use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Allocator {
    first: u64,
    total: u64,
    free: BTreeMap<u64, u64>,
    free_blocks: u64,
    pending: Vec<(u64, u64)>,
    sealed: Vec<(u64, u64)>,
    /// Where the next search starts, so sequential allocations stay contiguous.
    cursor: u64,
}

/// An extent `[start, start + len)` of blocks.
pub type Extent = (u64, u64);

impl Allocator {
    /// An allocator with every block in `[first, total)` free.
    pub fn new(first: u64, total: u64) -> Self {
        let mut free = BTreeMap::new();
        if total > first {
            free.insert(first, total - first);
        }
        Allocator {
            first,
            total,
            free,
            free_blocks: total.saturating_sub(first),
            pending: Vec::new(),
            sealed: Vec::new(),
            cursor: first,
        }
    }

    pub fn total_blocks(&self) -> u64 {
        self.total
    }
    pub fn first_block(&self) -> u64 {
        self.first
    }
    /// Blocks free now.
    pub fn free_blocks(&self) -> u64 {
        self.free_blocks
    }
    /// Blocks freed but not yet reusable (they come back after the next commits).
    pub fn pending_blocks(&self) -> u64 {
        self.pending.iter().chain(&self.sealed).map(|e| e.1).sum()
    }

    /// Marks `[start, start+len)` as in use (mount-time rebuild). Returns false if any of it was
    /// not free (a block referenced twice, or out of range): the caller reports corruption.
    pub fn mark_used(&mut self, start: u64, len: u64) -> bool {
        if len == 0 || start < self.first || start.checked_add(len).is_none_or(|e| e > self.total) {
            return false;
        }
        let Some((&fs, &fl)) = self.free.range(..=start).next_back() else {
            return false;
        };
        if start + len > fs + fl {
            return false;
        }
        self.free.remove(&fs);
        if start > fs {
            self.free.insert(fs, start - fs);
        }
        if fs + fl > start + len {
            self.free.insert(start + len, fs + fl - (start + len));
        }
        self.free_blocks -= len;
        true
    }

    /// Allocates up to `want` contiguous blocks (at least one), preferring the space right
    /// after the previous allocation. `None` when the device is full.
    pub fn alloc(&mut self, want: u64) -> Option<Extent> {
        debug_assert!(want > 0);
        let pick = self
            .free
            .range(self.cursor..)
            .find(|(_, &l)| l >= want)
            .or_else(|| self.free.range(..self.cursor).find(|(_, &l)| l >= want))
            .or_else(|| self.free.iter().max_by_key(|(_, &l)| l))
            .map(|(&s, &l)| (s, l))?;
        let (s, l) = pick;
        let n = want.min(l);
        self.free.remove(&s);
        if l > n {
            self.free.insert(s + n, l - n);
        }
        self.free_blocks -= n;
        self.cursor = s + n;
        Some((s, n))
    }

    /// Allocates one block about half the device away from `near` (the second copy of a
    /// metadata block: one region going bad should not take both), the nearest free block at
    /// or after that point, wrapping around. The cursor of `alloc` stays where it is. `None`
    /// when the device is full.
    pub fn alloc_far(&mut self, near: u64) -> Option<u64> {
        // For one block the run's choices are exactly these: the free block at the point,
        // else the first free one after it, else the first one from the start.
        self.alloc_far_run(near, 1).map(|(b, _)| b)
    }

    /// Allocates up to `want` contiguous blocks about half the device away from `near` (the
    /// second copy of a data extent under `copies=2`): the free extent holding that point if
    /// `want` blocks fit from there, else the first free extent after it (wrapping around) that
    /// holds `want`, else the largest free extent (fewer blocks: the caller shortens the first
    /// copy to match). The cursor of `alloc` stays where it is. `None` when the device is full.
    pub fn alloc_far_run(&mut self, near: u64, want: u64) -> Option<Extent> {
        debug_assert!(want > 0);
        let span = self.total.checked_sub(self.first).filter(|&s| s > 0)?;
        let target = self.first + (near.saturating_sub(self.first) + span / 2) % span;
        let containing = self
            .free
            .range(..=target)
            .next_back()
            .filter(|(&s, &l)| s + l >= target.saturating_add(want))
            .map(|(&s, &l)| (s, l, target));
        let fits = |(&s, &l): (&u64, &u64)| (l >= want).then_some((s, l, s));
        let (s, l, b) = containing
            .or_else(|| self.free.range(target..).find_map(fits))
            .or_else(|| self.free.range(..target).find_map(fits))
            .or_else(|| {
                self.free
                    .iter()
                    .max_by_key(|(_, &l)| l)
                    .map(|(&s, &l)| (s, l, s))
            })?;
        let n = want.min(s + l - b);
        self.free.remove(&s);
        if b > s {
            self.free.insert(s, b - s);
        }
        if b + n < s + l {
            self.free.insert(b + n, s + l - b - n);
        }
        self.free_blocks -= n;
        Some((b, n))
    }

    /// Gives back blocks just allocated and never referenced by any commit (a run shortened
    /// before use): free at once, with no commit to wait for.
    pub fn unalloc(&mut self, start: u64, len: u64) {
        if len > 0 {
            self.insert_free(start, len);
        }
    }

    /// Frees an extent once the commit being built is durable.
    pub fn free_later(&mut self, start: u64, len: u64) {
        if len > 0 {
            self.pending.push((start, len));
        }
    }

    /// The running transaction's snapshot is taken: its frees wait for that commit.
    pub fn seal(&mut self) {
        let p = std::mem::take(&mut self.pending);
        self.sealed.extend(p);
    }

    /// The sealed commit is durable: its frees become allocatable.
    pub fn release_sealed(&mut self) {
        for (s, l) in std::mem::take(&mut self.sealed) {
            self.insert_free(s, l);
        }
    }

    fn insert_free(&mut self, mut s: u64, mut l: u64) {
        debug_assert!(s >= self.first && s + l <= self.total);
        self.free_blocks += l;
        if let Some((&ps, &pl)) = self.free.range(..s).next_back() {
            debug_assert!(ps + pl <= s, "double free of block {s}");
            if ps + pl == s {
                self.free.remove(&ps);
                s = ps;
                l += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(s + l)) {
            self.free.remove(&(s + l));
            l += nl;
        }
        self.free.insert(s, l);
    }

    /// Free extents, for tools and tests.
    pub fn free_extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.free.iter().map(|(&s, &l)| (s, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_contiguously_and_frees_only_after_release() {
        let mut a = Allocator::new(10, 110);
        assert_eq!(a.alloc(30), Some((10, 30)));
        assert_eq!(a.alloc(30), Some((40, 30)));
        a.free_later(10, 30);
        assert_eq!(a.free_blocks(), 40);
        a.seal();
        assert_eq!(
            a.alloc(50),
            Some((70, 40)),
            "pending blocks must not be reused"
        );
        assert_eq!(a.alloc(1), None);
        a.release_sealed();
        assert_eq!(a.free_blocks(), 30);
        assert_eq!(a.alloc(100), Some((10, 30)));
    }

    #[test]
    fn mark_used_detects_double_use_and_range() {
        let mut a = Allocator::new(10, 100);
        assert!(a.mark_used(20, 5));
        assert!(!a.mark_used(22, 1));
        assert!(!a.mark_used(5, 1));
        assert!(!a.mark_used(99, 2));
        assert!(a.mark_used(99, 1));
        assert_eq!(a.free_blocks(), 90 - 6);
    }

    #[test]
    fn alloc_far_takes_one_block_half_the_device_away_and_keeps_the_cursor() {
        let mut a = Allocator::new(100, 1100);
        assert_eq!(a.alloc(10), Some((100, 10)));
        assert_eq!(a.alloc_far(100), Some(600));
        assert_eq!(
            a.alloc_far(100),
            Some(601),
            "the nearest free block after the point"
        );
        assert_eq!(a.alloc_far(900), Some(400), "wraps around");
        assert_eq!(a.alloc(1), Some((110, 1)), "the cursor did not move");
        assert_eq!(a.free_blocks(), 1000 - 14);
        assert!(!a.mark_used(600, 1) && !a.mark_used(400, 1));
        // Nothing free after the point: the first free block from the start.
        let mut b = Allocator::new(0, 10);
        assert!(b.mark_used(5, 5));
        assert_eq!(b.alloc_far(1), Some(0));
        let mut full = Allocator::new(0, 2);
        assert!(full.mark_used(0, 2));
        assert_eq!(full.alloc_far(0), None);
    }

    #[test]
    fn alloc_far_run_takes_a_run_half_the_device_away() {
        let mut a = Allocator::new(100, 1100);
        assert_eq!(a.alloc(10), Some((100, 10)));
        assert_eq!(a.alloc_far_run(100, 10), Some((600, 10)));
        assert_eq!(
            a.alloc_far_run(110, 10),
            Some((610, 10)),
            "sequential stays sequential"
        );
        assert_eq!(a.alloc(5), Some((110, 5)), "the cursor did not move");
        assert_eq!(a.free_blocks(), 1000 - 35);
        assert!(!a.mark_used(605, 1) && !a.mark_used(615, 1));
        // The point's own free extent is too short from there: the next that holds the run.
        let mut b = Allocator::new(0, 100);
        assert!(b.mark_used(53, 1));
        assert_eq!(b.alloc_far_run(0, 5), Some((54, 5)));
        // Wraps around to the start.
        let mut c = Allocator::new(0, 100);
        assert!(c.mark_used(40, 60));
        assert_eq!(c.alloc_far_run(0, 8), Some((0, 8)));
        // No free extent holds the whole run: the largest one, shorter.
        let mut d = Allocator::new(0, 20);
        assert!(d.mark_used(3, 1) && d.mark_used(10, 1));
        assert_eq!(d.alloc_far_run(0, 15), Some((11, 9)));
        let mut full = Allocator::new(0, 2);
        assert!(full.mark_used(0, 2));
        assert_eq!(full.alloc_far_run(0, 1), None);
    }

    #[test]
    fn unalloc_returns_blocks_at_once() {
        let mut a = Allocator::new(0, 100);
        assert_eq!(a.alloc(10), Some((0, 10)));
        a.unalloc(6, 4);
        assert_eq!(a.free_blocks(), 94);
        assert_eq!(a.free_extents().collect::<Vec<_>>(), vec![(6, 94)]);
    }

    #[test]
    fn coalesces_on_release() {
        let mut a = Allocator::new(0, 100);
        for _ in 0..10 {
            a.alloc(10);
        }
        for s in (0..100).step_by(10) {
            a.free_later(s, 10);
        }
        a.seal();
        a.release_sealed();
        assert_eq!(a.free_extents().collect::<Vec<_>>(), vec![(0, 100)]);
    }
}
