//! The command line: argument definitions and one module per command.

mod cat;
mod cp;
mod info;
mod list;
mod ls;
mod mount;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub(crate) use crate::bytes::human_bytes;
use crate::chain::{CheckpointTree, DiscoverOptions};
use crate::fs::fat::FatTimeZone;
use crate::fs::FsOptions;
use crate::vfs::Vfs;
use crate::vm;
use crate::{Error, Result};

#[derive(Debug, Parser)]
#[command(
    name = "ckptfs",
    version,
    about = "Browse every state of a checkpoint tree (Hyper-V VHDX/AVHDX, VHD/AVHD, VMware VMDK) or of a whole VMware or Hyper-V VM, read-only"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Facts about one disk file, as its format records them (VHDX: type, sizes, GUIDs,
    /// log, parent locator, blocks; VHD: footer, dynamic header, locators, blocks; VMDK:
    /// descriptor, extents, headers), or about a Hyper-V configuration file (.vmcx,
    /// .VMRS, 2012 R2 .xml: the VM's name, ids, generation, version and drives).
    Info {
        /// The disk file or Hyper-V configuration file.
        file: PathBuf,
        /// Print the facts as one JSON object (with "format": "vhdx", "vhd", "vmdk",
        /// "hyperv-config" or "hyperv-xml").
        #[arg(long)]
        json: bool,
        /// For a Hyper-V configuration file: every key and value, as a tree.
        #[arg(long)]
        keys: bool,
    },
    /// The checkpoint tree that IMAGE belongs to.
    List {
        #[command(flatten)]
        image: ImageArgs,
        /// Print the tree as JSON: checkpoints with their files, parents, times and
        /// volumes (the form README "list --json" describes, for scripts).
        #[arg(long)]
        json: bool,
    },
    /// List a directory of the tree: `<checkpoint>/<volume>/<guest path>` (for a VM,
    /// `<checkpoint>/<disk>/<volume>/<guest path>`).
    Ls {
        #[command(flatten)]
        image: ImageArgs,
        /// Path inside the tree, as the mount shows it (default: the list of checkpoints).
        #[arg(default_value = "")]
        path: String,
        /// Long format: type, permissions, links, owner, size, modification time.
        #[arg(short = 'l')]
        long: bool,
        /// List subdirectories too.
        #[arg(short = 'R')]
        recursive: bool,
        /// Also list each file's named streams (NTFS alternate data streams) as
        /// `NAME:STREAM`, the form `cat` and `cp` take.
        #[arg(long)]
        streams: bool,
    },
    /// Write a file of the tree to stdout, e.g. `<checkpoint>/disk.img`.
    Cat {
        #[command(flatten)]
        image: ImageArgs,
        /// Path inside the tree, as the mount shows it; `FILE:STREAM` for a named stream
        /// of an NTFS file (when no file of that whole name exists).
        path: String,
    },
    /// Copy files or trees out of the tree, keeping bytes, times and symlinks.
    Cp {
        #[command(flatten)]
        image: ImageArgs,
        /// Copy directories and their contents.
        #[arg(short = 'r', short_alias = 'R', long = "recursive")]
        recursive: bool,
        /// Paths inside the tree, then the destination on this machine.
        #[arg(required = true, num_args = 2..)]
        paths: Vec<String>,
    },
    /// Mount the tree read-only: MOUNTPOINT/<checkpoint>/<volume>/... (for a VM,
    /// MOUNTPOINT/<checkpoint>/<disk>/<volume>/...)
    ///
    /// Returns once the mount is ready and serves it in the background (FUSE), unless -f.
    Mount(mount::MountArgs),
    /// End a mount made by `ckptfs mount`.
    Umount {
        /// Where the tree is mounted.
        mountpoint: PathBuf,
        /// Detach now even if files are open there; the mount ends when they close.
        #[arg(short = 'z', long)]
        lazy: bool,
    },
}

/// Any file of a checkpoint tree, and where else to look for its relatives.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Any disk file of the tree (VHDX/AVHDX, VHD/AVHD, a VMDK descriptor), recognised
    /// by its content; or a VM: its configuration (VMware .vmx or .vmsd, Hyper-V .vmcx
    /// or .xml) or its folder.
    pub image: PathBuf,
    /// The VM to open from a folder that holds several (its name or its configuration
    /// file's name).
    #[arg(long = "vm", value_name = "NAME")]
    pub vm: Option<String>,
    /// Also look in DIR for parents and children (repeatable).
    #[arg(long = "search-dir", value_name = "DIR")]
    pub search_dirs: Vec<PathBuf>,
    /// The zone FAT's local times were written in: utc, local, or an offset such as
    /// +01:00. FAT records no zone; the default shows its times as if they were UTC.
    #[arg(long = "fat-time-zone", value_name = "ZONE", default_value = "utc")]
    pub fat_time_zone: FatTimeZone,
    /// Read a child over a parent whose identity is not the one the child recorded (a
    /// VMDK parentCID, a VHDX DataWriteGuid, a VHD UUID), with a warning. The parent
    /// changed after the child was made, so the child's states may read wrongly.
    #[arg(long = "ignore-parent-mismatch")]
    pub ignore_parent_mismatch: bool,
}

impl ImageArgs {
    fn discover_options(&self) -> DiscoverOptions {
        DiscoverOptions {
            search_dirs: self.search_dirs.clone(),
            accept_parent_mismatch: self.ignore_parent_mismatch,
        }
    }

    /// The tree to show: a VM's checkpoints and disks if IMAGE is a VM's configuration
    /// or folder, else the checkpoint tree of the disk file.
    pub fn open_vfs(&self) -> Result<Vfs> {
        let opts = self.discover_options();
        let fs_options = FsOptions {
            fat_time_zone: self.fat_time_zone,
        };
        let choice = vm::Choice { vm: self.vm.clone() };
        match vm::open(&self.image, &choice, &opts)? {
            Some(vm) => Ok(Vfs::of_vm(vm, fs_options)),
            None if self.vm.is_some() => Err(Error::Usage(format!(
                "--vm picks a VM from a folder; {} is a disk file",
                self.image.display()
            ))),
            None => Ok(Vfs::new(CheckpointTree::discover(&self.image, &opts)?, fs_options)),
        }
    }
}

/// Say which path of the tree an error concerns.
pub(crate) fn in_path(path: &str, e: Error) -> Error {
    Error::InPath {
        path: path.to_string(),
        source: Box::new(e),
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { file, json, keys } => info::run(&file, json, keys),
        Command::List { image, json } => list::run(&image, json),
        Command::Ls {
            image,
            path,
            long,
            recursive,
            streams,
        } => ls::run(
            &image,
            &path,
            &ls::Options {
                long,
                recursive,
                streams,
            },
        ),
        Command::Cat { image, path } => cat::run(&image, &path),
        Command::Cp {
            image,
            recursive,
            mut paths,
        } => {
            let dest = std::path::PathBuf::from(paths.pop().expect("clap requires two paths"));
            cp::run(&image, &paths, &dest, &cp::Options { recursive })
        }
        Command::Mount(args) => mount::run(&args),
        Command::Umount { mountpoint, lazy } => mount::umount(&mountpoint, lazy),
    }
}
