//! ESXi vmfsSparse extents (`COWD`). Not read yet.

use super::{VmdkError, VmdkFile};
use crate::format::Run;
use crate::io::ImageFile;

pub const MAGIC: &[u8; 4] = b"COWD";

#[derive(Debug)]
pub struct CowdExtent {
    pub file: ImageFile,
}

impl CowdExtent {
    pub fn open(_file: ImageFile, _sectors: u64) -> Result<Self, VmdkError> {
        Err(VmdkError::Unsupported("vmfsSparse (COWD) extents".into()))
    }

    pub(crate) fn map(
        &self,
        _d: &VmdkFile,
        _idx: usize,
        _rel: u64,
        _len: u64,
        _tag: u64,
        _out: &mut Vec<Run>,
    ) -> Result<(), VmdkError> {
        Err(VmdkError::Unsupported("vmfsSparse (COWD) extents".into()))
    }

    pub fn info(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    pub(crate) fn allocated(&self, _d: &VmdkFile, _idx: usize) -> Result<u64, VmdkError> {
        Ok(0)
    }
}
