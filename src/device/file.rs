//! (being written)
use super::{AlignedBuf, BlockDevice};
use std::io;
use std::path::Path;
pub struct FileDevice;
impl FileDevice {
    pub fn open(_path: &Path, _read_only: bool) -> io::Result<FileDevice> {
        todo!()
    }
    pub fn create_image(_path: &Path, _size: u64) -> io::Result<()> {
        todo!()
    }
}
impl BlockDevice for FileDevice {
    fn align(&self) -> u32 {
        todo!()
    }
    fn capacity(&self) -> u64 {
        todo!()
    }
    fn read_at(&self, _offset: u64, _buf: &mut AlignedBuf) -> io::Result<()> {
        todo!()
    }
    fn write_at(&self, _offset: u64, _bufs: &[&AlignedBuf]) -> io::Result<()> {
        todo!()
    }
    fn flush(&self) -> io::Result<()> {
        todo!()
    }
    fn discard(&self, _offset: u64, _len: u64) -> io::Result<()> {
        todo!()
    }
}
