#![no_main]
//! See `checks/vmdk_sparse.rs` for the input format and the outcomes asserted.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ckptfs_fuzz_checks::vmdk_sparse::check(data));
