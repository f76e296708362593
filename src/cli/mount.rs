//! `ckptfs mount IMAGE MOUNTPOINT` and `ckptfs umount MOUNTPOINT`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::ImageArgs;
use crate::mount::{self, parse_size, MountOptions, Settings};
use crate::Result;

/// Bytes per entry of a checkpoint disk's run cache (see `chain::layered_disk`).
const BYTES_PER_CACHED_RUN: u64 = 24;

#[derive(Debug, Args)]
pub struct MountArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    /// The directory to mount on.
    pub mountpoint: PathBuf,
    /// Stay in the foreground and log to the terminal; Ctrl-C unmounts.
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount options, comma-separated (every one `-o` accepts; see `options::HELP`).
    #[arg(short = 'o', value_name = "OPTIONS", help = mount::OPTIONS_HELP)]
    pub options: Vec<String>,
    /// Memory for each checkpoint's map of which file holds each disk block
    /// (e.g. 64M); larger helps random reads over very large disks.
    #[arg(long, value_name = "SIZE", default_value = "6M", value_parser = parse_size)]
    pub cache_size: u64,
    /// Requests served at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Append the background process's log to FILE (by default it is discarded;
    /// -f shows it on the terminal).
    #[arg(long, value_name = "FILE", conflicts_with = "foreground")]
    pub log_file: Option<PathBuf>,
}

pub fn run(args: &MountArgs) -> Result<()> {
    let options = MountOptions::parse(&args.options)?;
    // Cheap checks first, then discovery: a missing parent or a broken chain is
    // reported here, on the terminal, before anything is mounted or forked.
    mount::check_mountpoint(&args.mountpoint)?;
    let runs = (args.cache_size / BYTES_PER_CACHED_RUN).max(1);
    let vfs = args
        .image
        .open_vfs()?
        .with_cached_runs(usize::try_from(runs).unwrap_or(usize::MAX));
    let image = args
        .image
        .image
        .canonicalize()
        .unwrap_or_else(|_| args.image.image.clone());
    let settings = Settings {
        options,
        foreground: args.foreground,
        threads: usize::from(args.threads),
        log_file: args.log_file.clone(),
    };
    mount::mount(vfs, &image, &args.mountpoint, &settings)
}

pub fn umount(mountpoint: &Path, lazy: bool) -> Result<()> {
    mount::umount(mountpoint, lazy)
}
