//! Where the copies of a data block are: how many there are, where each one is, and which one
//! reads try first. The one type that knows; the rest of the code iterates over copies. Today
//! an extent has one copy, or two with `copies=2` (`ExtentItem` encodes the second's start);
//! a third copy, or copies on a second device, is a change to this type and to that encoding.

/// Most copies of a data block the format can describe.
pub const MAX_DATA_COPIES: usize = 2;

/// The device blocks holding the copies of one data block (or the starts of the runs that
/// hold the copies of an extent), in the order reads try them: the first copy first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copies {
    addrs: [u64; MAX_DATA_COPIES],
    len: u8,
}

impl Copies {
    /// A block with one copy, at `addr`.
    pub fn one(addr: u64) -> Copies {
        let mut addrs = [0; MAX_DATA_COPIES];
        addrs[0] = addr;
        Copies { addrs, len: 1 }
    }

    /// The copies at `addrs`, first copy first: at least one, at most `MAX_DATA_COPIES`.
    pub fn new(addrs: &[u64]) -> Option<Copies> {
        if addrs.is_empty() || addrs.len() > MAX_DATA_COPIES {
            return None;
        }
        let mut c = Copies::one(addrs[0]);
        c.addrs[..addrs.len()].copy_from_slice(addrs);
        c.len = addrs.len() as u8;
        Some(c)
    }

    /// Where the first copy is: the one reads try first, and the one placement keeps close
    /// to the file's other blocks.
    pub fn first(&self) -> u64 {
        self.addrs[0]
    }

    /// How many copies there are (at least one).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Never true: a block has at least one copy.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy `k` (0: the first).
    pub fn get(&self, k: usize) -> Option<u64> {
        self.as_slice().get(k).copied()
    }

    /// Every copy, in the order reads try them.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.as_slice().iter().copied()
    }

    /// The copies a read falls back to when the first is bad.
    pub fn others(&self) -> impl Iterator<Item = u64> + '_ {
        self.as_slice()[1..].iter().copied()
    }

    /// Which copy `addr` is (0: the first), if it is one.
    pub fn position(&self, addr: u64) -> Option<usize> {
        self.as_slice().iter().position(|&a| a == addr)
    }

    /// The copies `by` blocks further on: block `by` of an extent whose copies start here.
    pub fn offset(&self, by: u64) -> Copies {
        let mut c = *self;
        for a in &mut c.addrs[..usize::from(self.len)] {
            *a += by;
        }
        c
    }

    fn as_slice(&self) -> &[u64] {
        &self.addrs[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_read_order() {
        let c = Copies::new(&[10, 500]).unwrap();
        assert_eq!((c.first(), c.len()), (10, 2));
        assert_eq!(c.iter().collect::<Vec<_>>(), [10, 500]);
        assert_eq!(c.others().collect::<Vec<_>>(), [500]);
        assert_eq!((c.position(500), c.position(11)), (Some(1), None));
        assert_eq!(c.offset(3).iter().collect::<Vec<_>>(), [13, 503]);
        let one = Copies::one(7);
        assert_eq!((one.len(), one.others().count(), one.get(1)), (1, 0, None));
        assert!(Copies::new(&[]).is_none());
        assert!(Copies::new(&[1; MAX_DATA_COPIES + 1]).is_none());
    }
}
