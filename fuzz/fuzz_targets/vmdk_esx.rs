#![no_main]
//! See `checks/vmdk_esx.rs` for the input format and the outcomes asserted.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckptfs_fuzz_checks::vmdk_esx::check(data));
