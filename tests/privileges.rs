//! Dropping privileges on modification, differentially against ext4: a write, truncate,
//! `fallocate` of every mode or `copy_file_range` into a file by a caller without CAP_FSETID
//! clears set-user-ID, set-group-ID when group-execute is set, and `security.capability`;
//! root's changes keep them; chown clears them for everyone. Through the writeback cache
//! (plain writes), with `O_DIRECT`, and through `mmap`.

mod common;

use common::differential::{Pair, User};

/// A root-owned file `f` of mode `mode` holding 8 KiB, with a `security.capability`, and a
/// readable source file `src` for copies.
fn setup(p: &Pair, mode: &str) {
    p.same(
        &User::root(),
        &format!(
            "rm -f f src; head -c 8192 /dev/zero | tr '\\0' a > f; chmod {mode} f; \
             setfattr -n security.capability -v 0x0100000201000000000000000000000000000000 f; \
             head -c 4096 /dev/zero | tr '\\0' b > src; chmod 644 src; \
             stat -c %A f; getfattr --absolute-names -n security.capability f | tail -n +2"
        ),
    );
}

/// What is left of the privileges: the mode and whether the capability survived.
const SHOW: &str = "; echo status $?; stat -c %A f; \
    getfattr --absolute-names -n security.capability f 2>&1 | tail -n +2 | grep -c capability";

/// Every way of modifying a file's data or size.
const MODIFY: &[&str] = &[
    "echo more >> f",
    "dd if=/dev/zero of=f bs=4096 count=1 conv=notrunc status=none",
    "xfs_io -d -c 'pwrite -q 0 4096' f",
    "xfs_io -c 'mmap -w 0 4096' -c 'mwrite 0 100' -c 'msync -s 0 4096' f",
    "truncate -s 100 f",
    "truncate -s 100000 f",
    "python3 -c \"import os; os.close(os.open('f', os.O_WRONLY | os.O_TRUNC))\"",
    "fallocate -l 65536 f",
    "fallocate -n -l 65536 f",
    "fallocate -p -o 0 -l 4096 f",
    "fallocate -z -o 0 -l 4096 f",
    "xfs_io -c 'copy_range src' f",
];

#[test]
fn unprivileged_modifications_drop_privileges_as_on_ext4() {
    let p = Pair::new();
    for mode in ["6777", "6767", "4777", "2777", "6766"] {
        for m in MODIFY {
            setup(&p, mode);
            p.same(&User::nobody(), &format!("{m}{SHOW}"));
            // The owner is unprivileged too, and not in the group when it is a member of
            // nothing (the file's group is root's).
            setup(&p, mode);
            p.same(&User::root(), &format!("chown 1000 f{SHOW}"));
            p.same(&User::id(1000, 1000), &format!("{m}{SHOW}"));
            // A member of the file's group through a supplementary group.
            setup(&p, mode);
            p.same(
                &User::root(),
                &format!("chown 1000:1000 f{SHOW}; chmod {mode} f"),
            );
            p.same(
                &User::id(2000, 2000).with_groups(&[1000]),
                &format!("{m}{SHOW}"),
            );
        }
    }
}

#[test]
fn root_modifications_keep_privileges_as_on_ext4() {
    let p = Pair::new();
    for m in MODIFY {
        setup(&p, "6777");
        p.same(&User::root(), &format!("{m}{SHOW}"));
    }
}

#[test]
fn chown_and_chgrp_clear_privileges_as_on_ext4() {
    let p = Pair::new();
    for (who, change) in [
        (User::root(), "chown 1000 f"),
        (User::root(), "chgrp 1000 f"),
        (User::root(), "chown 0:0 f"),
        (User::root(), "chmod 6777 f; chown 1000:1000 f"),
    ] {
        for mode in ["6777", "6766", "2777", "6644"] {
            setup(&p, mode);
            p.same(&who, &format!("{change}{SHOW}"));
        }
    }
    // An owner giving its file to one of its groups.
    setup(&p, "6777");
    p.same(&User::root(), "chown 1000:1000 f; chmod 6777 f");
    p.same(
        &User::id(1000, 1000).with_groups(&[2000]),
        &format!("chgrp 2000 f{SHOW}"),
    );
}
