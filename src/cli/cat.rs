//! `ckptfs cat IMAGE PATH`: a file of the virtual tree on stdout.

use std::io::Write;

use super::ImageArgs;
use crate::io::ReadAt;
use crate::vfs::{self, Entry};
use crate::{Error, Result};

const CHUNK: usize = 4 << 20;

pub fn run(image: &ImageArgs, path: &str) -> Result<()> {
    let tree = image.open_tree()?;
    let reader: Box<dyn ReadAt> = match vfs::resolve(&tree, path)? {
        Entry::DiskImage(i) => Box::new(tree.disk(i)),
        Entry::Root | Entry::Checkpoint(_) => {
            return Err(Error::Usage(format!("{path}: is a directory")))
        }
    };
    copy_to_stdout(reader.as_ref())
}

/// Stream `reader` to stdout. A closed pipe (`| head`) ends the copy quietly.
fn copy_to_stdout(reader: &dyn ReadAt) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; CHUNK];
    let size = reader.size();
    let mut offset = 0u64;
    let write_err = |source: std::io::Error| Error::Io {
        path: "<stdout>".into(),
        what: "write failed".into(),
        source,
    };
    while offset < size {
        let n = (size - offset).min(CHUNK as u64) as usize;
        reader.read_at(offset, &mut buf[..n])?;
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
