//! Unit tests of the VMDK parsers.
