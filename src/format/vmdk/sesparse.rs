//! ESXi SESparse extents. Not read yet.

use super::{VmdkError, VmdkFile};
use crate::format::Run;
use crate::io::ImageFile;

pub const CONST_MAGIC: u64 = 0x0000_0000_cafe_babe;

#[derive(Debug)]
pub struct SeSparseExtent {
    pub file: ImageFile,
}

impl SeSparseExtent {
    pub fn open(_file: ImageFile, _sectors: u64) -> Result<Self, VmdkError> {
        Err(VmdkError::Unsupported("SESparse extents".into()))
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
        Err(VmdkError::Unsupported("SESparse extents".into()))
    }

    pub fn info(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    pub(crate) fn allocated(&self, _d: &VmdkFile, _idx: usize) -> Result<u64, VmdkError> {
        Ok(0)
    }
}
