//! The differential harness itself: ext4 and stablefs agree on plain permission checks, as
//! root and as other users, and a script that differs is caught.

mod common;

use common::differential::{run_script, Pair, User};

#[test]
fn plain_permissions_agree_and_a_difference_is_caught() {
    let p = Pair::new();
    p.same(
        &User::root(),
        "umask 022; echo hi > f; chmod 640 f; chown 1000:1000 f; mkdir d; chmod 750 d; stat -c '%A %U %G' f d; stat -c %s f",
    );
    let out = p.same(
        &User::nobody(),
        "cat f; echo $?; touch d/x; echo $?; touch mine; stat -c '%A %u %g' mine",
    );
    assert!(
        out.contains("Permission denied") || out.contains("1\n"),
        "{out}"
    );
    p.same(&User::id(1000, 1000), "cat f; echo more >> f; cat f");
    p.same(
        &User::id(2000, 2000).with_groups(&[1000]),
        "cat f; echo no >> f",
    );
    // The harness sees a difference: the two roots have different device numbers.
    let [e, s] = p.roots();
    let script = "stat -c %d .";
    assert_ne!(
        run_script(&e, &User::root(), script),
        run_script(&s, &User::root(), script)
    );
}
