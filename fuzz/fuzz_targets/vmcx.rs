#![no_main]
//! See `checks/vmcx.rs` for the input format and the outcomes asserted.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckptfs_fuzz_checks::vmcx::check(data));
