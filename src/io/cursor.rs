//! `std::io` adapters for crates that want a stream (`ntfs` wants `Read + Seek`,
//! `fatfs` `Read + Write + Seek`): a position over a shared [`ReadAt`]. Each user holds
//! its own cursor, so the position is never shared between threads. Writes always fail:
//! nothing is ever written to an image.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use super::ReadAt;

#[derive(Clone)]
pub struct Cursor {
    inner: Arc<dyn ReadAt>,
    pos: u64,
}

impl Cursor {
    pub fn new(inner: Arc<dyn ReadAt>) -> Self {
        Cursor { inner, pos: 0 }
    }
}

/// An `io::Error` carrying a crate error, so its message survives the foreign crate.
pub fn to_io(e: crate::Error) -> io::Error {
    io::Error::other(e)
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.inner.size();
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min((size - self.pos).min(usize::MAX as u64) as usize);
        self.inner.read_at(self.pos, &mut buf[..n]).map_err(to_io)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.inner.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = base.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl Write for Cursor {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "ckptfs never writes to an image",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes(Vec<u8>);
    impl ReadAt for Bytes {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::Result<()> {
            crate::io::check_range(offset, buf.len(), self.size())?;
            buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
    }

    #[test]
    fn reads_seeks_and_refuses_writes() {
        let mut c = Cursor::new(Arc::new(Bytes((0..100).collect())));
        let mut b = [0u8; 8];
        c.seek(SeekFrom::Start(96)).unwrap();
        assert_eq!(c.read(&mut b).unwrap(), 4);
        assert_eq!(&b[..4], &[96, 97, 98, 99]);
        assert_eq!(c.read(&mut b).unwrap(), 0);
        assert_eq!(c.seek(SeekFrom::End(-10)).unwrap(), 90);
        assert_eq!(c.seek(SeekFrom::Current(5)).unwrap(), 95);
        assert!(c.seek(SeekFrom::Current(-200)).is_err());
        assert!(c.write(b"x").is_err());
    }
}
