//! Hyper-V VMs: configurations in the `.vmcx` container ([`storage`]: `.vmcx`, `.VMRS`
//! and the host's `data.vmcx`) or (2012 R2) in XML ([`xml`]), both a tree of typed
//! keys ([`keys`]); what the tree says about a VM or checkpoint ([`machine`]); the VM
//! with its checkpoints from its folder ([`vm`]).

pub mod keys;
pub mod machine;
pub mod storage;
pub mod vm;
pub mod xml;

/// The test-only container writer, for the unit tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../tests/support/vmcx_writer.rs"]
mod test_writer;

pub use storage::VmcxError;
pub use vm::{configs_in, read_config};

/// The host's list of VMs (`data.vmcx`: `Configurations/VirtualMachines/_<id>_` = the
/// path of each VM's configuration) as (id, path) pairs; `None` if `root` is no such
/// list.
pub fn host_vms(root: &keys::Key) -> Option<Vec<(String, String)>> {
    let list = root.get("Configurations/VirtualMachines")?;
    Some(
        list.children
            .iter()
            .map(|k| {
                let id = k.name.trim_matches('_').to_string();
                let path = match &k.value {
                    keys::KeyValue::String(s) => s.clone(),
                    _ => String::new(),
                };
                (id, path)
            })
            .collect(),
    )
}
