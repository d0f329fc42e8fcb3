//! POSIX ACLs, differentially against ext4: `setfacl`/`getfacl` output, access decided by
//! named entries and the mask, the mask kept in step with `chmod`, default ACLs inherited
//! (the umask ignored), set-group-ID cleared by `setfacl` for an owner outside the group,
//! `ls -l`'s `+`; as root, as the owner and as other users; and all of it after a remount.

mod common;

use common::differential::{Pair, User};

const ALICE: u32 = 1000;
const BOB: u32 = 1001;
const CAROL: u32 = 1002;
const STAFF: u32 = 2000;

fn alice() -> User {
    User::id(ALICE, ALICE)
}

/// Every name under `t/`, with its ACLs and the mode `ls` shows.
const SHOW_ALL: &str = "for f in $(find . -mindepth 1 | sort); do \
    getfacl -n \"$f\"; ls -ld \"$f\" | cut -c1-11; done";

#[test]
fn access_acls_behave_as_on_ext4() {
    let mut p = Pair::new();
    let root = User::root();
    p.same(
        &root,
        &format!(
            "umask 022; echo data > f; chown {ALICE}:{ALICE} f; chmod 600 f; \
             setfacl -m u:{BOB}:rw,g:{STAFF}:r f; getfacl -n f; ls -l f | cut -c1-11"
        ),
    );
    // Access by named user, named group, and nobody else.
    p.same(&User::id(BOB, BOB), "cat f; echo bob >> f; echo $?");
    p.same(
        &User::id(CAROL, CAROL).with_groups(&[STAFF]),
        "cat f; echo carol >> f; echo $?",
    );
    p.same(&User::id(CAROL, CAROL), "cat f; echo $?");
    p.same(&User::nobody(), "cat f; setfacl -m u:65534:rw f; echo $?");
    // The mask limits named entries; chmod moves the mask, not the owning group's entry.
    p.same(&alice(), "setfacl -m m::r f; getfacl -n f");
    p.same(&User::id(BOB, BOB), "echo again >> f; echo $?; cat f");
    p.same(&alice(), "chmod 664 f; getfacl -n f; stat -c %A f");
    p.same(&alice(), "chmod 640 f; getfacl -n f; stat -c %A f");
    // An ACL the mode can say is no ACL at all; removing all entries.
    p.same(
        &alice(),
        "setfacl -m u::rwx,g::r,o::- f; getfacl -n f; ls -l f | cut -c1-11",
    );
    p.same(
        &alice(),
        &format!("setfacl -m u:{BOB}:r f; setfacl -b f; getfacl -n f; ls -l f | cut -c1-11"),
    );
    p.same(
        &alice(),
        &format!("setfacl -m u:{BOB}:rw f; setfacl -x u:{BOB} f; getfacl -n f"),
    );
    p.same(
        &root,
        &format!("setfacl -m u:{BOB}:rwx,g:{STAFF}:rx f; {SHOW_ALL}"),
    );
    let before = p.same(&root, SHOW_ALL);
    p.stable.remount();
    assert_eq!(p.same(&root, SHOW_ALL), before);
}

#[test]
fn default_acls_are_inherited_as_on_ext4() {
    let mut p = Pair::new();
    let root = User::root();
    p.same(
        &root,
        &format!(
            "mkdir d; chown {ALICE}:{ALICE} d; \
             setfacl -d -m u:{BOB}:rwx,g:{STAFF}:rx,m::rwx,o::- d; \
             setfacl -m u:{BOB}:rwx d; getfacl -n d"
        ),
    );
    for umask in ["022", "077", "000"] {
        p.same(
            &alice(),
            &format!(
                "umask {umask}; touch d/f{umask}; mkdir d/sub{umask}; mkfifo d/p{umask}; \
                 ln -s f{umask} d/l{umask}; mkdir -m 700 d/private{umask}; \
                 python3 -c \"import os; os.close(os.open('d/x{umask}', os.O_CREAT | os.O_WRONLY, 0o640))\"; \
                 cd d; for f in *{umask}; do getfacl -n \"$f\" 2>&1; ls -ld \"$f\" | cut -c1-11; done"
            ),
        );
    }
    // Nested inheritance and access through the inherited entries.
    p.same(&alice(), "mkdir -p d/sub022/deeper; touch d/sub022/deeper/f; getfacl -n d/sub022/deeper d/sub022/deeper/f");
    p.same(
        &User::id(BOB, BOB),
        "echo bob > d/sub022/deeper/f; echo $?; cat d/sub022/deeper/f; ls d/sub022",
    );
    p.same(
        &User::id(CAROL, CAROL).with_groups(&[STAFF]),
        "ls d/sub022; touch d/sub022/carol; echo $?",
    );
    // Removing the default ACL: new nodes get the umask again.
    p.same(
        &alice(),
        "setfacl -k d; umask 027; touch d/after; getfacl -n d d/after",
    );
    let before = p.same(&root, SHOW_ALL);
    p.stable.remount();
    assert_eq!(p.same(&root, SHOW_ALL), before);
}

#[test]
fn setfacl_and_chmod_clear_set_group_id_as_on_ext4() {
    let p = Pair::new();
    let root = User::root();
    for (who, name) in [
        (alice(), "outside"),
        (alice().with_groups(&[STAFF]), "member"),
        (User::root(), "root"),
    ] {
        p.same(
            &root,
            &format!("touch {name}; mkdir {name}.d; chown {ALICE}:{STAFF} {name} {name}.d; chmod 2775 {name} {name}.d"),
        );
        p.same(
            &who,
            &format!(
                "setfacl -m u:{BOB}:r {name}; stat -c %A {name}; \
                 setfacl -m u:{BOB}:rx {name}.d; stat -c %A {name}.d; \
                 chmod 2770 {name}; stat -c %A {name}; getfacl -n {name} {name}.d"
            ),
        );
    }
}
