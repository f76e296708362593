//! `ckptfs ls [-l] [-R] IMAGE [PATH]`: list a directory of the virtual tree.

use std::ffi::OsString;

use super::{in_path, ImageArgs};
use crate::fs::{Attr, FileKind};
use crate::vfs::{Ino, Vfs};
use crate::Result;

pub struct Options {
    pub long: bool,
    pub recursive: bool,
    /// Named streams after each entry, as `NAME:STREAM`.
    pub streams: bool,
}

pub fn run(image: &ImageArgs, path: &str, opts: &Options) -> Result<()> {
    let vfs = image.open_vfs()?;
    let ino = vfs.resolve(path)?;
    let attr = vfs.getattr(ino)?;
    if attr.kind != FileKind::Dir {
        print_entry(
            &vfs,
            ino,
            &attr,
            path.rsplit('/').find(|p| !p.is_empty()).unwrap_or(path).as_ref(),
            opts,
        );
        return Ok(());
    }
    let mut failed = false;
    list_dir(&vfs, ino, path.trim_end_matches('/'), opts, &mut failed)?;
    if failed {
        return Err(crate::Error::Usage("some directories could not be listed".into()));
    }
    Ok(())
}

fn list_dir(vfs: &Vfs, ino: Ino, path: &str, opts: &Options, failed: &mut bool) -> Result<()> {
    let mut entries = vfs.readdir(ino).map_err(|e| in_path(path, e))?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if opts.recursive {
        println!("{}:", if path.is_empty() { "." } else { path });
    }
    let mut subdirs = Vec::new();
    for e in &entries {
        match vfs.getattr(e.ino) {
            Ok(attr) => print_entry(vfs, e.ino, &attr, &e.name, opts),
            Err(err) => {
                eprintln!("ckptfs: {}", in_path(&join(path, &e.name), err));
                *failed = true;
            }
        }
        if e.kind == FileKind::Dir {
            subdirs.push(e);
        }
    }
    if opts.recursive {
        for e in subdirs {
            println!();
            let sub = join(path, &e.name);
            if let Err(err) = list_dir(vfs, e.ino, &sub, opts, failed) {
                eprintln!("ckptfs: {err}");
                *failed = true;
            }
        }
    }
    Ok(())
}

fn join(dir: &str, name: &OsString) -> String {
    let name = name.to_string_lossy();
    if dir.is_empty() {
        name.into_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn print_entry(vfs: &Vfs, ino: Ino, attr: &Attr, name: &std::ffi::OsStr, opts: &Options) {
    let name = name.to_string_lossy();
    print_line(vfs, ino, attr, &name, opts);
    if !opts.streams || attr.kind == FileKind::Symlink {
        return;
    }
    match vfs.streams(ino) {
        Ok(streams) => {
            for s in streams {
                let line = format!("{name}:{}", s.name.to_string_lossy());
                let shown = Attr {
                    kind: FileKind::File,
                    size: s.size,
                    perm: 0o444,
                    nlink: 1,
                    ..attr.clone()
                };
                print_line(vfs, ino, &shown, &line, opts);
            }
        }
        Err(e) => eprintln!("ckptfs: {name}: streams: {e}"),
    }
}

fn print_line(vfs: &Vfs, ino: Ino, attr: &Attr, name: &str, opts: &Options) {
    if !opts.long {
        println!("{name}");
        return;
    }
    let target = match attr.kind {
        FileKind::Symlink => match vfs.readlink(ino) {
            Ok(t) => format!(" -> {}", t.to_string_lossy()),
            Err(_) => " -> ?".to_string(),
        },
        _ => String::new(),
    };
    println!(
        "{}{} {:>3} {:>5} {:>5} {:>12} {} {name}{target}",
        kind_char(attr.kind),
        perm_string(attr.perm),
        attr.nlink,
        attr.uid,
        attr.gid,
        attr.size,
        humantime::format_rfc3339_seconds(attr.mtime),
    );
}

fn kind_char(k: FileKind) -> char {
    match k {
        FileKind::Dir => 'd',
        FileKind::File => '-',
        FileKind::Symlink => 'l',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
    }
}

/// `rwxr-xr-x`, with setuid/setgid/sticky as `ls` shows them.
pub fn perm_string(perm: u16) -> String {
    let mut s: Vec<char> = "rwxrwxrwx"
        .chars()
        .enumerate()
        .map(|(i, c)| if perm & (0o400 >> i) != 0 { c } else { '-' })
        .collect();
    for (bit, pos, set, unset) in [(0o4000, 2, 's', 'S'), (0o2000, 5, 's', 'S'), (0o1000, 8, 't', 'T')] {
        if perm & bit != 0 {
            s[pos] = if s[pos] == 'x' || s[pos] == 's' || s[pos] == 't' {
                set
            } else {
                unset
            };
        }
    }
    s.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::perm_string;

    #[test]
    fn permission_strings_follow_ls() {
        assert_eq!(perm_string(0o755), "rwxr-xr-x");
        assert_eq!(perm_string(0o444), "r--r--r--");
        assert_eq!(perm_string(0o4755), "rwsr-xr-x");
        assert_eq!(perm_string(0o1777), "rwxrwxrwt");
        assert_eq!(perm_string(0o2644), "rw-r-Sr--");
    }
}
