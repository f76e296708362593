//! `ckptfs cat IMAGE PATH`: a file of the virtual tree on stdout; `PATH:stream` for a
//! named stream (NTFS alternate data stream) of a file or directory.

use std::io::Write;

use super::ImageArgs;
use crate::fs::FileKind;
use crate::{Error, Result};

const CHUNK: usize = 4 << 20;

pub fn run(image: &ImageArgs, path: &str) -> Result<()> {
    let vfs = image.open_vfs()?;
    let (ino, stream) = vfs.resolve_stream(path)?;
    if let Some(name) = stream {
        return copy_to_stdout(path, |offset, buf| vfs.read_stream(ino, &name, offset, buf));
    }
    match vfs.getattr(ino)?.kind {
        FileKind::File => copy_to_stdout(path, |offset, buf| vfs.read(ino, offset, buf)),
        FileKind::Dir => Err(Error::IsADirectory(path.to_string())),
        FileKind::Symlink => Err(Error::Usage(format!(
            "{path}: is a symbolic link to {}",
            vfs.readlink(ino)?.to_string_lossy()
        ))),
        _ => Err(Error::Usage(format!("{path}: is not a regular file"))),
    }
}

/// Copy what `read` reads (at an offset, 0 at the end) to stdout. A closed pipe
/// (`| head`) ends the copy quietly.
fn copy_to_stdout(path: &str, read: impl Fn(u64, &mut [u8]) -> Result<usize>) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    let write_err = |source: std::io::Error| Error::Io {
        path: "<stdout>".into(),
        what: "write failed".into(),
        source,
    };
    loop {
        let n = read(offset, &mut buf).map_err(|e| super::in_path(path, e))?;
        if n == 0 {
            break;
        }
        match out.write_all(&buf[..n]) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.map_err(write_err)?,
        }
        offset += n as u64;
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(write_err),
    }
}
