//! `CrashDevice`: a medium that can lose power.
//!
//! It keeps two images: the *durable* one (what survived the last `flush`) and the *volatile*
//! one that reads see (durable plus every write since). Writes since the last flush are also
//! kept in issue order. Power is cut at a chosen operation index (writes and flushes count);
//! from then on every call fails with `EIO`, as a vanished disk does. `crash_image` then builds
//! what a real disk could hold after the cut: the durable image plus an arbitrary subset of the
//! unflushed writes, applied in an arbitrary order, one of them optionally torn at 512-byte
//! sector boundaries (any subset of its sectors, not only a prefix).
//!
//! Everything above the `BlockDevice` trait runs unchanged on it: this is how crash
//! consistency is tested without pulling a plug.

use super::{check_aligned, check_bufs, AlignedBuf, BlockDevice};
use parking_lot::Mutex;
use std::io;

/// The unit a disk writes atomically.
pub const SECTOR: usize = 512;

struct State {
    durable: Vec<u8>,
    volatile: Vec<u8>,
    unflushed: Vec<(u64, Vec<u8>)>,
    ops: u64,
    cut_at: Option<u64>,
    dead: bool,
    /// After the cut, reads still work: a failing medium rather than a power cut.
    reads_survive: bool,
}

pub struct CrashDevice {
    align: u32,
    state: Mutex<State>,
}

/// A small deterministic generator (splitmix64), so a seed reproduces a crash exactly.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

impl CrashDevice {
    /// A medium whose durable (and visible) contents are `image`.
    pub fn new(image: Vec<u8>, align: u32) -> Self {
        assert!(align.is_power_of_two() && image.len() % align as usize == 0);
        CrashDevice {
            align,
            state: Mutex::new(State {
                volatile: image.clone(),
                durable: image,
                unflushed: Vec::new(),
                ops: 0,
                cut_at: None,
                dead: false,
                reads_survive: false,
            }),
        }
    }

    /// Cuts the power when the `op`-th write or flush (counting from 0) is issued: that
    /// operation and all later ones fail. The cut operation, if a write, may still have
    /// reached the medium (it counts as unflushed).
    pub fn cut_at(&self, op: u64) {
        self.state.lock().cut_at = Some(op);
    }

    /// From the `op`-th write or flush on, every write, flush and discard fails with `EIO`
    /// and changes nothing, while reads keep working: a medium that fails to write.
    pub fn fail_writes_at(&self, op: u64) {
        let mut st = self.state.lock();
        st.cut_at = Some(op);
        st.reads_survive = true;
    }

    /// Writes and flushes issued so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    pub fn is_dead(&self) -> bool {
        self.state.lock().dead
    }

    /// What the medium could hold after the cut (see the module doc). `seed` picks the subset,
    /// the order and the torn write; `tear` allows one write to be torn.
    pub fn crash_image(&self, seed: u64, tear: bool) -> Vec<u8> {
        let st = self.state.lock();
        let mut rng = SplitMix(seed);
        let mut img = st.durable.clone();
        let mut kept: Vec<&(u64, Vec<u8>)> = st.unflushed.iter().filter(|_| rng.coin()).collect();
        // Any order: a disk may reorder writes between flushes.
        for i in (1..kept.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            kept.swap(i, j);
        }
        let torn = (tear && !kept.is_empty()).then(|| rng.below(kept.len() as u64) as usize);
        for (i, (off, data)) in kept.iter().enumerate() {
            let off = *off as usize;
            if Some(i) == torn {
                for s in (0..data.len()).step_by(SECTOR) {
                    if rng.coin() {
                        img[off + s..off + s + SECTOR].copy_from_slice(&data[s..s + SECTOR]);
                    }
                }
            } else {
                img[off..off + data.len()].copy_from_slice(data);
            }
        }
        img
    }

    /// The durable image plus every unflushed write: what a disk that lost nothing holds.
    pub fn all_writes_image(&self) -> Vec<u8> {
        self.state.lock().volatile.clone()
    }

    /// Counts an operation; fails if the power is (now) off.
    fn tick(st: &mut State) -> io::Result<()> {
        if st.dead {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let op = st.ops;
        st.ops += 1;
        if st.cut_at.is_some_and(|c| op >= c) {
            st.dead = true;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

impl BlockDevice for CrashDevice {
    fn align(&self) -> u32 {
        self.align
    }

    fn capacity(&self) -> u64 {
        self.state.lock().volatile.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut AlignedBuf) -> io::Result<()> {
        let st = self.state.lock();
        if st.dead {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        check_aligned(
            self.align,
            offset,
            buf.len() as u64,
            st.volatile.len() as u64,
        )?;
        let n = buf.len();
        buf.copy_from_slice(&st.volatile[offset as usize..offset as usize + n]);
        Ok(())
    }

    fn write_at(&self, offset: u64, bufs: &[&AlignedBuf]) -> io::Result<()> {
        let len = check_bufs(self.align, bufs)?;
        let mut st = self.state.lock();
        check_aligned(self.align, offset, len, st.volatile.len() as u64)?;
        // A failing medium writes nothing; at a power cut the write in flight may land.
        let cut_now = st.cut_at == Some(st.ops) && !st.reads_survive;
        let r = Self::tick(&mut st);
        if r.is_err() && !cut_now {
            return r;
        }
        // Record sector-aligned pieces so a tear can split them; the write at the cut is
        // in flight: it may or may not have landed.
        let mut pos = offset;
        for b in bufs {
            st.unflushed.push((pos, b.to_vec()));
            if !cut_now {
                st.volatile[pos as usize..pos as usize + b.len()].copy_from_slice(b);
            }
            pos += b.len() as u64;
        }
        r
    }

    fn flush(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        Self::tick(&mut st)?;
        for (off, data) in std::mem::take(&mut st.unflushed) {
            st.durable[off as usize..off as usize + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        check_aligned(self.align, offset, len, st.volatile.len() as u64)?;
        Self::tick(&mut st)?;
        // Discarded contents are undefined until overwritten; model them as unchanged.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(fill: u8, len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(len);
        b.fill(fill);
        b
    }

    #[test]
    fn flushed_writes_survive_unflushed_may_not() {
        let d = CrashDevice::new(vec![0; 64 * 1024], 512);
        d.write_at(0, &[&buf(1, 4096)]).unwrap();
        d.flush().unwrap();
        d.write_at(4096, &[&buf(2, 4096)]).unwrap();
        d.cut_at(d.ops());
        assert!(d.flush().is_err());
        assert!(
            d.write_at(0, &[&buf(3, 512)]).is_err(),
            "dead after the cut"
        );
        let mut seen = [false; 2];
        for seed in 0..64 {
            let img = d.crash_image(seed, false);
            assert!(
                img[..4096].iter().all(|&b| b == 1),
                "flushed data always survives"
            );
            seen[usize::from(img[4096] == 2)] = true;
            assert!(
                img[4096..8192].iter().all(|&b| b == img[4096]),
                "untorn write is all or nothing"
            );
        }
        assert_eq!(
            seen,
            [true, true],
            "an unflushed write sometimes survives, sometimes not"
        );
    }

    #[test]
    fn torn_writes_split_at_sectors_and_cut_write_is_in_flight() {
        let d = CrashDevice::new(vec![0; 64 * 1024], 512);
        d.cut_at(0);
        assert!(d.write_at(0, &[&buf(7, 8192)]).is_err());
        assert!(d.read_at(0, &mut AlignedBuf::zeroed(512)).is_err());
        let mut mixed = false;
        for seed in 0..64 {
            let img = d.crash_image(seed, true);
            let sectors: Vec<u8> = (0..16).map(|s| img[s * 512]).collect();
            for s in 0..16 {
                assert!(
                    img[s * 512..(s + 1) * 512].iter().all(|&b| b == sectors[s]),
                    "sectors are atomic"
                );
            }
            mixed |= sectors.contains(&0) && sectors.contains(&7);
        }
        assert!(mixed, "some crash images hold part of the torn write");
    }

    #[test]
    fn same_seed_same_image() {
        let d = CrashDevice::new(vec![0; 64 * 1024], 512);
        for i in 0..10u8 {
            d.write_at(u64::from(i) * 4096, &[&buf(i + 1, 4096)])
                .unwrap();
        }
        assert_eq!(d.crash_image(42, true), d.crash_image(42, true));
    }
}
