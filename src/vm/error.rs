//! What can be wrong with a VM configuration file. The path is added by the caller
//! ([`crate::Error::VmConfig`]).

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A line the reader cannot parse.
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },

    /// A key with a value that cannot be used.
    #[error("{key}: {what}")]
    Value { key: String, what: String },

    /// The checkpoint tree it describes is not a tree (a parent that is no checkpoint,
    /// a loop, a repeated id).
    #[error("{0}")]
    Tree(String),

    /// Not a configuration this reader knows, or too large to be one.
    #[error("{0}")]
    NotAConfig(String),

    /// A Hyper-V configuration container (`.vmcx`, `.VMRS`) that cannot be read.
    #[error("{0}")]
    HyperVStorage(#[from] super::hyperv::VmcxError),
}
