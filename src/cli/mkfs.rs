//! `stablefs mkfs`: prepares the device or image file, then formats it.

use super::size::format_size;
use stablefs::device::FileDevice;
use stablefs::mkfs::{self, MkfsOptions, MkfsReport};
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Formats `path`. With `size`, a missing image file is created (sparse) and a smaller one is
/// extended; without it, `path` must exist. An image this call created is removed again if
/// formatting fails.
pub fn run(path: &Path, size: Option<u64>, opts: &MkfsOptions) -> Result<(), String> {
    let created = prepare(path, size)?;
    let report = format(path, opts).inspect_err(|_| {
        if created {
            let _ = fs::remove_file(path);
        }
    })?;
    println!("{}", describe(path, &report));
    Ok(())
}

/// Creates a sparse image of `size` bytes and formats it with `opts`.
pub fn create_and_format(path: &Path, size: u64, opts: &MkfsOptions) -> Result<MkfsReport, String> {
    FileDevice::create_image(path, size)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    format(path, opts).inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}

/// `created stablefs on PATH: uuid …, 1.00 GiB (1073741824 bytes), block size 4096, 262144
/// blocks, metadata copies 2, data copies 1`
pub fn describe(path: &Path, r: &MkfsReport) -> String {
    format!(
        "created stablefs on {}: uuid {}, {} ({} bytes), block size {}, {} blocks, metadata copies {}, data copies {}",
        path.display(),
        stablefs::format::uuid_string(&r.uuid),
        format_size(r.size_bytes),
        r.size_bytes,
        r.block_size,
        r.total_blocks,
        r.metadata_copies,
        r.data_copies
    )
}

/// Makes `path` exist with at least `size` bytes; returns whether it created it.
fn prepare(path: &Path, size: Option<u64>) -> Result<bool, String> {
    let shown = path.display();
    let meta = match (fs::metadata(path), size) {
        (Ok(meta), _) => meta,
        (Err(e), Some(size)) if e.kind() == ErrorKind::NotFound => {
            FileDevice::create_image(path, size)
                .map_err(|e| format!("cannot create {shown}: {e}"))?;
            return Ok(true);
        }
        (Err(e), None) if e.kind() == ErrorKind::NotFound => {
            return Err(format!(
                "{shown} does not exist (give --size to create an image)"
            ));
        }
        (Err(e), _) => return Err(format!("cannot access {shown}: {e}")),
    };
    let Some(size) = size else {
        return Ok(false);
    };
    if meta.file_type().is_block_device() {
        return Err(format!(
            "{shown} is a block device: --size only applies to image files"
        ));
    }
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file or a block device"));
    }
    if meta.len() > size {
        return Err(format!(
            "{shown} is already {} ({} bytes), larger than --size {size}; not shrinking it",
            format_size(meta.len()),
            meta.len()
        ));
    }
    if meta.len() < size {
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(size))
            .map_err(|e| format!("cannot extend {shown} to {size} bytes: {e}"))?;
        log::info!("extended {shown} to {} ({size} bytes)", format_size(size));
    }
    Ok(false)
}

fn format(path: &Path, opts: &MkfsOptions) -> Result<MkfsReport, String> {
    let shown = path.display();
    let dev = FileDevice::open(path, false).map_err(|e| format!("cannot open {shown}: {e}"))?;
    mkfs::mkfs(std::sync::Arc::new(dev), opts).map_err(|e| format!("cannot format {shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_what_it_made() {
        let r = MkfsReport {
            uuid: [0x12; 16],
            size_bytes: 1 << 30,
            block_size: 4096,
            total_blocks: 262_144,
            metadata_copies: 2,
            data_copies: 2,
        };
        assert_eq!(
            describe(Path::new("disk.img"), &r),
            "created stablefs on disk.img: uuid 12121212-1212-1212-1212-121212121212, \
             1.00 GiB (1073741824 bytes), block size 4096, 262144 blocks, metadata copies 2, \
             data copies 2"
        );
    }

    #[test]
    fn prepare_checks_before_touching_anything() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.img");
        let e = prepare(&missing, None).unwrap_err();
        assert!(
            e.ends_with("does not exist (give --size to create an image)"),
            "{e}"
        );

        let small = dir.path().join("small.img");
        fs::write(&small, [0u8; 100]).unwrap();
        assert_eq!(prepare(&small, None), Ok(false));
        assert_eq!(prepare(&small, Some(4096)), Ok(false));
        assert_eq!(fs::metadata(&small).unwrap().len(), 4096);
        assert_eq!(prepare(&small, Some(4096)), Ok(false));
        let e = prepare(&small, Some(1024)).unwrap_err();
        assert!(e.contains("larger than --size 1024"), "{e}");
        assert_eq!(fs::metadata(&small).unwrap().len(), 4096);

        let e = prepare(dir.path(), Some(4096)).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
