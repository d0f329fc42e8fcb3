//! `CorruptDevice`: a medium that lies, for the corruption campaign. Everything above the
//! `BlockDevice` trait is the real code; only the medium misbehaves.
//!
//! It keeps every write in `unit`-sized pieces (a filesystem block) and counts them. One of
//! them can be made to go wrong as the write happens (`fault_at`):
//! - lost: acknowledged, never stored (the medium keeps what it had);
//! - misdirected: stored at another unit (the right one keeps what it had);
//! - torn: only its first sectors stored.
//!
//! At rest, after the writes: a bit flipped anywhere (`flip_bit`), or a unit put back to a
//! version it held earlier (`put_back`: a stale block, as a lost write of a later version
//! leaves it). The device remembers every earlier version of every unit for that.

use super::{check_aligned, check_bufs, AlignedBuf, BlockDevice, MemDevice};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;

/// What happens to the one write chosen by `CorruptDevice::fault_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFault {
    /// Acknowledged but never stored.
    Lost,
    /// Stored at unit `to` instead of its own.
    Misdirected { to: u64 },
    /// Only the first `sectors` 512-byte sectors stored.
    Torn { sectors: u32 },
}

/// Which write a fault hit: the unit it was meant for and its index among all unit writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultHit {
    pub unit: u64,
    pub index: u64,
    pub fault: WriteFault,
}

pub struct CorruptDevice {
    mem: MemDevice,
    unit: u64,
    state: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Unit writes so far.
    writes: u64,
    fault: Option<(u64, WriteFault)>,
    hit: Option<FaultHit>,
    /// Earlier contents of every unit ever written, oldest first.
    versions: HashMap<u64, Vec<Vec<u8>>>,
}

impl CorruptDevice {
    /// A medium holding `image`, with logical block size `align`, logging writes in pieces of
    /// `unit` bytes (a multiple of `align`; every write must be a multiple of it).
    pub fn new(image: Vec<u8>, align: u32, unit: u32) -> Self {
        assert!(
            unit % align == 0,
            "unit {unit} is not a multiple of {align}"
        );
        CorruptDevice {
            mem: MemDevice::from_bytes(image, align),
            unit: u64::from(unit),
            state: Mutex::new(Inner::default()),
        }
    }

    /// Makes unit write number `index` (counting from 0) go wrong as `fault` says.
    pub fn fault_at(&self, index: u64, fault: WriteFault) {
        self.state.lock().fault = Some((index, fault));
    }

    /// Unit writes so far.
    pub fn writes(&self) -> u64 {
        self.state.lock().writes
    }

    /// The write the fault hit, once it has.
    pub fn hit(&self) -> Option<FaultHit> {
        self.state.lock().hit
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.mem.snapshot()
    }

    /// Flips bit `bit` (0-7) of the byte at `offset`.
    pub fn flip_bit(&self, offset: u64, bit: u8) {
        let b = self.mem.peek(offset, 1)[0];
        self.mem.poke(offset, &[b ^ (1 << (bit % 8))]);
    }

    /// Earlier versions of `unit` that differ from what it holds now.
    pub fn stale_versions(&self, unit: u64) -> usize {
        let now = self.mem.peek(unit * self.unit, self.unit as usize);
        let st = self.state.lock();
        st.versions
            .get(&unit)
            .map_or(0, |v| v.iter().filter(|x| **x != now).count())
    }

    /// The `k`-th (0: oldest) of the earlier versions of `unit` that differ from what it
    /// holds now.
    pub fn earlier_version(&self, unit: u64, k: usize) -> Option<Vec<u8>> {
        let now = self.mem.peek(unit * self.unit, self.unit as usize);
        let st = self.state.lock();
        st.versions
            .get(&unit)
            .and_then(|v| v.iter().filter(|x| **x != now).nth(k).cloned())
    }

    /// Puts back the `k`-th (0: oldest) of the earlier versions of `unit` that differ from
    /// what it holds now. False if there is no such version.
    pub fn put_back(&self, unit: u64, k: usize) -> bool {
        match self.earlier_version(unit, k) {
            Some(bytes) => {
                self.mem.poke(unit * self.unit, &bytes);
                true
            }
            None => false,
        }
    }

    /// Stores `bytes` at `unit`, remembering what was there.
    fn store(&self, st: &mut Inner, unit: u64, bytes: &[u8]) {
        let old = self.mem.peek(unit * self.unit, self.unit as usize);
        st.versions.entry(unit).or_default().push(old);
        self.mem.poke(unit * self.unit, bytes);
    }
}

impl BlockDevice for CorruptDevice {
    fn align(&self) -> u32 {
        self.mem.align()
    }

    fn capacity(&self) -> u64 {
        self.mem.capacity()
    }

    fn read_at(&self, offset: u64, buf: &mut AlignedBuf) -> io::Result<()> {
        self.mem.read_at(offset, buf)
    }

    fn write_at(&self, offset: u64, bufs: &[&AlignedBuf]) -> io::Result<()> {
        let len = check_bufs(self.align(), bufs)?;
        check_aligned(self.align(), offset, len, self.capacity())?;
        if offset % self.unit != 0 || bufs.iter().any(|b| b.len() as u64 % self.unit != 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "CorruptDevice: a write at {offset} is not in whole units of {}",
                    self.unit
                ),
            ));
        }
        let mut st = self.state.lock();
        let mut unit = offset / self.unit;
        for buf in bufs {
            for piece in buf.chunks(self.unit as usize) {
                let index = st.writes;
                st.writes += 1;
                match st.fault {
                    Some((i, fault)) if i == index => {
                        st.hit = Some(FaultHit { unit, index, fault });
                        match fault {
                            WriteFault::Lost => {}
                            WriteFault::Misdirected { to } => {
                                if to * self.unit + self.unit <= self.capacity() {
                                    self.store(&mut st, to, piece);
                                }
                            }
                            WriteFault::Torn { sectors } => {
                                let mut torn = self.mem.peek(unit * self.unit, piece.len());
                                let n = (sectors as usize * 512).min(piece.len());
                                torn[..n].copy_from_slice(&piece[..n]);
                                self.store(&mut st, unit, &torn);
                            }
                        }
                    }
                    _ => self.store(&mut st, unit, piece),
                }
                unit += 1;
            }
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.mem.flush()
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.mem.discard(offset, len)
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

    fn unit_bytes(d: &CorruptDevice, unit: u64) -> Vec<u8> {
        d.snapshot()[unit as usize * 4096..(unit as usize + 1) * 4096].to_vec()
    }

    #[test]
    fn each_fault_does_what_it_says_to_one_write_only() {
        let d = CorruptDevice::new(vec![0; 64 * 4096], 512, 4096);
        d.fault_at(1, WriteFault::Lost);
        d.write_at(0, &[&buf(1, 8192), &buf(2, 4096)]).unwrap();
        assert_eq!(d.writes(), 3);
        assert_eq!(unit_bytes(&d, 0), vec![1; 4096]);
        assert_eq!(unit_bytes(&d, 1), vec![0; 4096], "lost");
        assert_eq!(unit_bytes(&d, 2), vec![2; 4096]);
        assert_eq!(
            d.hit(),
            Some(FaultHit {
                unit: 1,
                index: 1,
                fault: WriteFault::Lost
            })
        );

        let d = CorruptDevice::new(vec![0; 64 * 4096], 512, 4096);
        d.fault_at(0, WriteFault::Misdirected { to: 9 });
        d.write_at(4096 * 3, &[&buf(7, 4096)]).unwrap();
        assert_eq!(unit_bytes(&d, 3), vec![0; 4096]);
        assert_eq!(unit_bytes(&d, 9), vec![7; 4096]);

        let d = CorruptDevice::new(vec![5; 64 * 4096], 512, 4096);
        d.fault_at(0, WriteFault::Torn { sectors: 3 });
        d.write_at(0, &[&buf(7, 4096)]).unwrap();
        let u = unit_bytes(&d, 0);
        assert!(u[..1536].iter().all(|&b| b == 7) && u[1536..].iter().all(|&b| b == 5));
    }

    #[test]
    fn put_back_restores_earlier_versions_and_flip_bit_flips_one() {
        let d = CorruptDevice::new(vec![0; 8 * 4096], 512, 4096);
        d.write_at(4096, &[&buf(1, 4096)]).unwrap();
        d.write_at(4096, &[&buf(2, 4096)]).unwrap();
        assert_eq!(d.stale_versions(1), 2, "zeros and ones");
        assert!(d.put_back(1, 1));
        assert_eq!(unit_bytes(&d, 1), vec![1; 4096]);
        assert!(!d.put_back(5, 0), "never written");
        d.flip_bit(4096 + 10, 3);
        assert_eq!(unit_bytes(&d, 1)[10], 1 ^ 8);
    }
}
