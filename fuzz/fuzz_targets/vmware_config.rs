#![no_main]
//! See `checks/vmware_config.rs` for the input format and the outcomes asserted.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckptfs_fuzz_checks::vmware_config::check(data));
