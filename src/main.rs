//! The `stablefs` command: mkfs, mount and the tools, as subcommands.
fn main() {
    eprintln!("stablefs: not yet");
    std::process::exit(1);
}
