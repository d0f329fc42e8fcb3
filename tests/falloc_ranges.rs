//! `FALLOC_FL_COLLAPSE_RANGE` and `FALLOC_FL_INSERT_RANGE`: ext4 shifts the file's bytes;
//! on stablefs both fail with `EOPNOTSUPP` and change nothing, because Linux's FUSE
//! (`fuse_file_fallocate`) refuses every mode but keep-size, punch-hole and zero-range before
//! a request reaches the daemon. A README limit says so; should a kernel ever pass these
//! modes on, the daemon (which refuses them too, `Fs::fallocate`) logs it and this test says
//! that the limit must be revisited.

mod common;

use common::differential::{Pair, User};

/// 16 KiB of `a` with a `b` at 8192, then a collapse or insert of the block at 4096.
fn script(flag: &str) -> String {
    format!(
        "head -c 16384 /dev/zero | tr '\\0' a > f; \
         printf b | dd of=f bs=1 seek=8192 conv=notrunc status=none; \
         fallocate {flag} -o 4096 -l 4096 f; echo \"rc $?\"; \
         stat -c 'size %s' f; grep -abo b f"
    )
}

#[test]
fn collapse_and_insert_range_are_refused_cleanly() {
    let p = Pair::new();
    for user in [User::root(), User::id(1000, 1000)] {
        for (flag, ext4_size, ext4_b) in [("-c", 12288, 4096), ("-i", 20480, 12288)] {
            let (e, s) = p.run(&user, &format!("rm -f f; {}", script(flag)));
            assert_eq!(
                e.stdout,
                format!("rc 0\nsize {ext4_size}\n{ext4_b}:b\n"),
                "ext4 as uid {} with fallocate {flag}: {e:?}",
                user.uid
            );
            let refused = s.stdout == "rc 1\nsize 16384\n8192:b\n"
                && s.stderr.contains("Operation not supported");
            let log = p.stable.log();
            assert!(
                refused && !log.contains("the kernel passed on fallocate mode"),
                "fallocate {flag} as uid {} was not refused by the kernel's FUSE as before \
                 (stablefs: {s:?}; daemon log:\n{log}): the README limit on \
                 FALLOC_FL_COLLAPSE_RANGE/FALLOC_FL_INSERT_RANGE must be revisited",
                user.uid
            );
        }
    }
}
