//! Hyper-V VMs: configurations in the `.vmcx` container or (2012 R2) in XML, both a
//! tree of typed keys ([`keys`]); what the tree says about a VM or checkpoint
//! ([`machine`]); the VM with its checkpoints from its folder ([`vm`]).

pub mod keys;
pub mod machine;
pub mod vm;
pub mod xml;

pub use vm::{configs_in, read_config};
