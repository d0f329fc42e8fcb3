//! The `stablefs` command: mkfs, mount and the tools, as subcommands.
//!
//! Failures print `stablefs: <message>` on stderr and exit 1; usage errors are clap's (exit 2).
//! `fsck` exits as fsck(8) does (0, 1, 4, 8; 16 for a usage error).
//! Logs go to stderr (`--log FILE` for a mount daemon), level `info` unless `RUST_LOG` says
//! otherwise.

mod cli;

use clap::{Args, Parser, Subcommand};
use cli::size::parse_size;
use stablefs::mkfs::MkfsOptions;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "stablefs",
    version,
    about = "A FUSE filesystem that checksums every block and verifies every read",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write an empty stablefs onto a block device or image file
    Mkfs(MkfsArgs),
    /// Mount a stablefs (in the background unless -f)
    Mount(MountArgs),
    /// Check an unmounted stablefs, and repair it with --repair. Exit status as fsck(8):
    /// 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 operational error,
    /// 16 usage error
    Fsck(FsckArgs),
    /// Verify every block (data and metadata, every copy) of a mounted filesystem (online,
    /// PATH a directory of the mount: only the data under it) or of an unmounted device or
    /// image; name the files of bad data blocks, repair bad metadata copies (and data copies,
    /// with copies=2) from good ones.
    /// `scrub status|pause|resume|cancel MOUNTPOINT` controls an online scrub. Exit status:
    /// 0 clean, 1 errors found and all corrected, 2 uncorrectable errors found, 4 operational
    /// error
    Scrub(ScrubArgs),
    /// What the daemon of a mounted stablefs has seen: checksum errors, repairs, device
    /// errors, bytes read and written, commits, the last scrub. Exit status: 0 printed,
    /// 1 not a stablefs mount or no answer
    Status(StatusArgs),
    /// Commit everything on each mounted stablefs named, and return once it is on the device
    /// (sync(1) cannot: the kernel sends a FUSE daemon no request for it). Exit status:
    /// 0 committed, 1 not a stablefs mount or the commit failed
    Sync(SyncArgs),
    /// Change the generic options of a mounted stablefs (ro, rw, noatime, strictatime,
    /// nodiratime, sync, dirsync, nosuid, ...), as `mount -o remount,OPTIONS MOUNTPOINT`
    /// does (mount(8) calls this through its helper): to ro, everything is committed first
    Remount(RemountArgs),
}

#[derive(Args)]
struct RemountArgs {
    /// Comma-separated options, repeatable; those not given stay as they are
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// The mountpoint
    #[arg(value_name = "MOUNTPOINT")]
    mountpoint: PathBuf,
}

#[derive(Args)]
struct SyncArgs {
    /// Mountpoints (or any file or directory of a mount)
    #[arg(value_name = "MOUNTPOINT", required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct StatusArgs {
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// The mountpoint (or any file or directory of the mount)
    #[arg(value_name = "MOUNTPOINT")]
    path: PathBuf,
}

#[derive(Args)]
#[command(
    override_usage = "stablefs scrub [--json] [--limit RATE] [--background] PATH
       stablefs scrub status|pause|resume|cancel [--json] MOUNTPOINT",
    after_help = "Arguments:
  PATH        An unmounted block device or image file: scrubbed here (offline).
              A mountpoint, or a directory in a stablefs mount: scrubbed by the daemon
              (online) while the filesystem is in use; a directory limits the data
              scrubbed to the files under it (the metadata is always scrubbed whole).
              Waits for the end, with a progress line on a terminal, unless --background.
  status|pause|resume|cancel MOUNTPOINT
              Show, pause, resume or cancel the online scrub of the mount (any path in
              it). A paused or running scrub keeps its position across unmounts.
              A single argument is always a PATH: an image named `status` is scrubbed
              by `stablefs scrub status`.

Exit status:
  0  clean
  1  errors found, and all corrected (bad metadata copies rewritten)
  2  uncorrectable errors found (e.g. a bad data block: data has one copy)
  4  operational error: nothing (or, cancelled, not everything) was scrubbed
     Control commands exit 0, or 4 when they could not be done."
)]
struct ScrubArgs {
    /// Print the report (or the status) as JSON
    #[arg(long)]
    json: bool,
    /// Read at most RATE bytes per second (K, M, G suffixes: powers of 1024)
    #[arg(long, value_name = "RATE", value_parser = parse_size)]
    limit: Option<u64>,
    /// Online: start the scrub and return at once, without waiting for it
    #[arg(long)]
    background: bool,
    /// [status|pause|resume|cancel] PATH
    #[arg(value_name = "PATH", num_args = 1..=2, required = true, hide = true)]
    args: Vec<PathBuf>,
}

#[derive(Args)]
struct FsckArgs {
    /// Fix what can be fixed safely (link counts, counters, directory indexes, unreachable
    /// inodes into /lost+found, orphans), in a new commit
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Block device or image file (not mounted)
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

#[derive(Args)]
struct MkfsArgs {
    /// Size of the image file: bytes, or a number with K, M, G or T (powers of 1024).
    /// Creates PATH (sparse) if it does not exist; extends a smaller image file.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// Filesystem block size in bytes (a power of two from 4K to 64K)
    #[arg(long, value_name = "BYTES", value_parser = parse_block_size)]
    block_size: Option<u32>,
    /// A name for the filesystem, up to 64 bytes of UTF-8
    #[arg(long, value_name = "TEXT", value_parser = parse_label)]
    label: Option<String>,
    /// Overwrite an existing filesystem
    #[arg(long)]
    force: bool,
    /// Copies of every metadata block: 2 (DUP, far apart on the device; the default) or 1
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
    metadata_copies: Option<u8>,
    /// Copies of every data block: 1 (the default) or 2 (copies=2: twice the writes and the
    /// space; a bad block is served and repaired from the other copy, far apart on the device)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=2))]
    copies: Option<u8>,
    /// Block device or image file
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

#[derive(Args)]
#[command(
    override_usage = "stablefs mount [-f] [-o OPTIONS]... [--log FILE] [PATH] MOUNTPOINT",
    after_help = "Arguments:
  [PATH]      Block device or image file [default: ./stablefs.img, created (1 GiB, sparse)
              and formatted if it does not exist]
  MOUNTPOINT  Existing directory to mount on"
)]
struct MountArgs {
    /// Stay in the foreground instead of detaching once mounted
    #[arg(short, long)]
    foreground: bool,
    /// Comma-separated mount options, repeatable: ro, rw, allow_other, default_permissions
    /// (always on), commit=SECONDS, idle_commit=MS (commit once changes have paused this
    /// long; 0: off), threads=N (FUSE threads), workers=N (read/fsync workers),
    /// and the generic ones mount(8) passes: nosuid, nodev, noexec (root's mounts are suid,
    /// dev, exec unless told), relatime (the default), strictatime, noatime, nodiratime,
    /// lazytime, sync, dirsync
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Append the daemon's logs to FILE instead of writing them to stderr
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// [PATH] MOUNTPOINT: one argument is the MOUNTPOINT, two are PATH and MOUNTPOINT
    #[arg(value_name = "MOUNTPOINT", hide = true)]
    first: PathBuf,
    #[arg(value_name = "MOUNTPOINT", hide = true)]
    second: Option<PathBuf>,
}

fn parse_block_size(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    u32::try_from(bytes).map_err(|_| format!("block size '{text}' is far too large"))
}

fn parse_label(text: &str) -> Result<String, String> {
    match text.len() {
        0..=64 => Ok(text.to_owned()),
        n => Err(format!(
            "the label is {n} bytes long; at most 64 are allowed"
        )),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // fsck(8) wants 16 for a usage error.
            let fsck = std::env::args().nth(1).as_deref() == Some("fsck");
            return ExitCode::from(if fsck && e.use_stderr() {
                16
            } else {
                e.exit_code() as u8
            });
        }
    };
    match run(cli.command) {
        Ok(status) => ExitCode::from(status),
        Err(message) => {
            eprintln!("stablefs: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status on success.
fn run(command: Command) -> Result<u8, String> {
    match command {
        Command::Mkfs(args) => {
            init_logging(None);
            let defaults = MkfsOptions::default();
            let opts = MkfsOptions {
                block_size: args.block_size.unwrap_or(defaults.block_size),
                label: args.label.unwrap_or_default(),
                force: args.force,
                metadata_copies: args.metadata_copies.unwrap_or(defaults.metadata_copies),
                data_copies: args.copies.unwrap_or(defaults.data_copies),
            };
            cli::mkfs::run(&args.path, args.size, &opts).map(|()| 0)
        }
        // Reports its own failures, with fsck(8)'s exit statuses.
        Command::Fsck(args) => Ok(cli::fsck::run(&args.path, args.repair, args.json)),
        Command::Status(args) => Ok(cli::status::run(&args.path, args.json)),
        Command::Sync(args) => Ok(cli::sync::run(&args.paths)),
        Command::Remount(args) => cli::remount::run(&args.options, &args.mountpoint).map(|()| 0),
        Command::Scrub(args) => {
            init_logging(None);
            // One argument: a path. Two: a command word, then a path (see cli::scrub).
            let (control, path) = match args.args.as_slice() {
                [path] => (None, path),
                [word, path] => (Some(word.to_str().unwrap_or("?")), path),
                _ => return Err("scrub: give a PATH, or a command and a MOUNTPOINT".into()),
            };
            Ok(cli::scrub::run(&cli::scrub::ScrubCommand {
                path,
                limit: args.limit,
                json: args.json,
                background: args.background,
                control,
            }))
        }
        Command::Mount(args) => {
            let log = args.log.as_ref().map(open_log).transpose()?;
            init_logging(log.as_ref());
            // One positional: the MOUNTPOINT. Two: PATH MOUNTPOINT.
            let (device, mountpoint) = match args.second {
                Some(mountpoint) => (Some(args.first), mountpoint),
                None => (None, args.first),
            };
            cli::mount::run(cli::mount::MountArgs {
                foreground: args.foreground,
                options: args.options,
                log,
                device,
                mountpoint,
            })
            .map(|()| 0)
        }
    }
}

fn open_log(path: &PathBuf) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
}

/// `info` unless `RUST_LOG` says otherwise; to `log` when given, else stderr.
fn init_logging(log: Option<&File>) {
    let env = env_logger::Env::default().default_filter_or("info");
    let mut builder = env_logger::Builder::from_env(env);
    if let Some(file) = log.and_then(|f| f.try_clone().ok()) {
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("stablefs").chain(args.iter().copied()))
    }

    #[test]
    fn mount_positionals() {
        let Command::Mount(m) = parse(&["mount", "/mnt"]).unwrap().command else {
            panic!("not mount")
        };
        assert_eq!((m.first, m.second), (PathBuf::from("/mnt"), None));
        let Command::Mount(m) = parse(&["mount", "-f", "-o", "ro", "img", "/mnt", "-o", "x"])
            .unwrap()
            .command
        else {
            panic!("not mount")
        };
        assert!(m.foreground);
        assert_eq!(m.options, ["ro", "x"]);
        assert_eq!(m.second, Some(PathBuf::from("/mnt")));
        assert!(parse(&["mount"]).is_err());
        assert!(parse(&["mount", "a", "b", "c"]).is_err());
    }

    #[test]
    fn mkfs_arguments() {
        let Command::Mkfs(m) = parse(&["mkfs", "--size", "1G", "--block-size", "16K", "x.img"])
            .unwrap()
            .command
        else {
            panic!("not mkfs")
        };
        assert_eq!((m.size, m.block_size), (Some(1 << 30), Some(16384)));
        assert!(parse(&["mkfs", "--size", "1.5G", "x.img"]).is_err());
        assert!(parse(&["mkfs", "--block-size", "8T", "x.img"]).is_err());
        assert!(parse(&["mkfs", "--label", &"x".repeat(65), "x.img"]).is_err());
        assert!(parse(&["mkfs"]).is_err());
    }

    #[test]
    fn scrub_arguments() {
        let Command::Scrub(s) = parse(&["scrub", "--limit", "10M", "x.img"])
            .unwrap()
            .command
        else {
            panic!("not scrub")
        };
        assert_eq!(
            (s.limit, s.args),
            (Some(10 << 20), vec![PathBuf::from("x.img")])
        );
        // A single word is a path, even a command word.
        let Command::Scrub(s) = parse(&["scrub", "status"]).unwrap().command else {
            panic!("not scrub")
        };
        assert_eq!(s.args, [PathBuf::from("status")]);
        let Command::Scrub(s) = parse(&["scrub", "pause", "--json", "/mnt"])
            .unwrap()
            .command
        else {
            panic!("not scrub")
        };
        assert!(s.json);
        assert_eq!(s.args, [PathBuf::from("pause"), PathBuf::from("/mnt")]);
        assert!(parse(&["scrub"]).is_err());
        assert!(parse(&["scrub", "a", "b", "c"]).is_err());
    }

    #[test]
    fn fsck_arguments() {
        let Command::Fsck(f) = parse(&["fsck", "--json", "--repair", "x.img"])
            .unwrap()
            .command
        else {
            panic!("not fsck")
        };
        assert!(f.repair && f.json);
        assert_eq!(f.path, PathBuf::from("x.img"));
        assert!(parse(&["fsck"]).is_err());
        assert!(parse(&["fsck", "-n", "x.img"]).is_err());
    }
}
