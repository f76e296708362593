//! A test-only writer of Hyper-V configuration containers ("HyperVStorage": `.vmcx`,
//! `.VMRS`), written from the layout the real samples hold (see
//! `src/vm/hyperv/storage.rs`), sharing no code with the reader: its own CRC-32, its
//! own offsets. `scripts/crosscheck_writer.py --format vmcx` reads what it writes with
//! dissect.hypervisor, and `tests/hyperv_config.rs` checks it against the real files.
//!
//! Layout written: headers at 0x0 and 0x1000, the object table at 0x2000 (227
//! entries, as Hyper-V writes it), key tables of `table_size` bytes from 0x3000 (keys
//! in depth-first order, a table started when the next entry does not fit, the rest
//! of each table one free entry), then file objects (values of `file_object_min` bytes
//! and more), then the replay log (one 4 KiB page of entries, then their data).

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Node(Vec<Item>),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

/// A key to write: name, value, extra flag bits (besides the file-object flag, which
/// the writer sets itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub name: String,
    pub value: Value,
    pub flags: u8,
}

pub fn item(name: &str, value: Value) -> Item {
    Item {
        name: name.to_string(),
        value,
        flags: 0,
    }
}

pub fn node(name: &str, children: Vec<Item>) -> Item {
    item(name, Value::Node(children))
}

pub fn text(name: &str, s: &str) -> Item {
    item(name, Value::Str(s.to_string()))
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes a key table holds (Hyper-V: 4096).
    pub table_size: usize,
    /// Header sequences at 0x0 and 0x1000.
    pub sequences: [u16; 2],
    /// Strings and byte arrays of this many bytes and more go to file objects
    /// (Hyper-V: 2048).
    pub file_object_min: usize,
    /// Leave the key tables' final contents in the replay log only (the tables in
    /// place zeroed), as if the writer stopped before applying its log.
    pub dirty: bool,
    /// Padding bytes after each entry's value (not covered by its checksum).
    pub pad: usize,
    /// Write each key table twice: an older copy (sequence 1, with a junk key) and the
    /// current one (sequence 2).
    pub stale_tables: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            table_size: 0x1000,
            sequences: [3, 2],
            file_object_min: 2048,
            dirty: false,
            pad: 0,
            stale_tables: false,
        }
    }
}

/// What was written, with where things are (for tests that damage them).
#[derive(Debug, Clone)]
pub struct Written {
    pub bytes: Vec<u8>,
    /// Absolute offsets of the current key tables, by index - 1.
    pub tables: Vec<u64>,
    /// Each key's path (`a/b/c`) and absolute entry offset, in write order.
    pub keys: Vec<(String, u64)>,
    pub log_offset: u64,
    /// Offsets of the file objects.
    pub file_objects: Vec<u64>,
}

impl Written {
    pub fn key_offset(&self, path: &str) -> u64 {
        self.keys
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("no key {path}"))
            .1
    }
}

pub const HEADER_SIG: u32 = 0x0128_2014;
pub const OBJECT_TABLE_AT: usize = 0x2000;
pub const OBJECT_ENTRIES: usize = 227;
const PAGE: usize = 0x1000;

/// CRC-32 (IEEE, reflected 0xEDB88320), bitwise.
pub fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// Store the CRC-32 of `buf[start..start + len]` (its field at `start + field` taken
/// as zero) in that field.
pub fn fix_crc(buf: &mut [u8], start: usize, len: usize, field: usize) {
    buf[start + field..start + field + 4].fill(0);
    let c = crc32(&buf[start..start + len]);
    buf[start + field..start + field + 4].copy_from_slice(&c.to_le_bytes());
}

fn put(buf: &mut Vec<u8>, at: usize, b: &[u8]) {
    if buf.len() < at + b.len() {
        buf.resize(at + b.len(), 0);
    }
    buf[at..at + b.len()].copy_from_slice(b);
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// One key entry laid out, before its parent pointer is known.
struct Laid {
    path: String,
    table: usize,
    offset: usize,
    parent: Option<usize>,
    insertion: u32,
    kind: u8,
    flags: u8,
    name: Vec<u8>,
    /// The value bytes as stored in the entry (a file-object pointer is filled later).
    value: Vec<u8>,
    /// Set for a value that goes to a file object.
    blob: Option<Vec<u8>>,
}

fn entry_len(l: &Laid, pad: usize) -> usize {
    21 + l.name.len() + l.value.len() + pad
}

/// The header bytes (46) with its checksum.
pub fn header(seq: u16, log_offset: u64, log_size: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(46);
    h.extend_from_slice(&HEADER_SIG.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&seq.to_le_bytes());
    h.extend_from_slice(&0x400u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&0x1000u32.to_le_bytes());
    h.extend_from_slice(&log_offset.to_le_bytes());
    h.extend_from_slice(&log_size.to_le_bytes());
    h.extend_from_slice(&0x1000u32.to_le_bytes());
    fix_crc(&mut h, 0, 46, 4);
    h
}

fn object_entry(kind: u8, offset: u64, size: u32, allocated: bool) -> Vec<u8> {
    let mut e = vec![kind];
    e.extend_from_slice(&[0; 4]);
    e.extend_from_slice(&offset.to_le_bytes());
    e.extend_from_slice(&size.to_le_bytes());
    e.push(u8::from(allocated));
    fix_crc(&mut e, 0, 18, 1);
    e
}

/// Write `roots` as a container.
pub fn write(roots: &[Item], opts: &Options) -> Written {
    // Depth-first layout.
    let mut laid: Vec<Laid> = Vec::new();
    let mut stack: Vec<(&Item, Option<usize>, u32, String)> = roots
        .iter()
        .enumerate()
        .rev()
        .map(|(i, it)| (it, None, 2 * i as u32 + 1, it.name.clone()))
        .collect();
    while let Some((it, parent, insertion, path)) = stack.pop() {
        let mut name = it.name.as_bytes().to_vec();
        name.push(0);
        let (kind, value, blob) = match &it.value {
            Value::Node(children) => {
                let mut v = vec![0u8; 8];
                v.extend_from_slice(&(2 * children.len() as u32 + 1).to_le_bytes());
                (9u8, v, None)
            }
            Value::Int(v) => (3, v.to_le_bytes().to_vec(), None),
            Value::UInt(v) => (4, v.to_le_bytes().to_vec(), None),
            Value::Double(v) => (5, v.to_bits().to_le_bytes().to_vec(), None),
            Value::Bool(v) => (8, u32::from(*v).to_le_bytes().to_vec(), None),
            Value::Str(_) | Value::Bytes(_) => {
                let (kind, data) = match &it.value {
                    Value::Str(s) => (6u8, utf16(s)),
                    Value::Bytes(b) => (7u8, b.clone()),
                    _ => unreachable!(),
                };
                if data.len() >= opts.file_object_min {
                    (kind, vec![0u8; 12], Some(data))
                } else {
                    let mut v = (data.len() as u32).to_le_bytes().to_vec();
                    v.extend_from_slice(&data);
                    (kind, v, None)
                }
            }
        };
        let flags = it.flags & !1 | u8::from(blob.is_some());
        let me = laid.len();
        laid.push(Laid {
            path: path.clone(),
            table: 0,
            offset: 0,
            parent,
            insertion,
            kind,
            flags,
            name,
            value,
            blob,
        });
        if let Value::Node(children) = &it.value {
            for (i, c) in children.iter().enumerate().rev() {
                stack.push((c, Some(me), 2 * i as u32 + 1, format!("{path}/{}", c.name)));
            }
        }
    }
    // Tables.
    let mut table = 0usize;
    let mut at = 10usize;
    for l in &mut laid {
        let len = entry_len(l, opts.pad);
        assert!(10 + len + 21 <= opts.table_size, "key {} does not fit a table", l.path);
        // Leave either nothing or room for a free entry (21 bytes) at a table's end,
        // as Hyper-V does: readers walk entries to the table's end.
        let fits = at + len == opts.table_size || at + len + 21 <= opts.table_size;
        if !fits {
            table += 1;
            at = 10;
        }
        l.table = table;
        l.offset = at;
        at += len;
    }
    let table_count = if laid.is_empty() { 0 } else { table + 1 };
    let copies = if opts.stale_tables { 2 } else { 1 };
    let tables_at = 0x3000usize;
    let files_at = tables_at + table_count * copies * opts.table_size.next_multiple_of(PAGE);
    // File objects.
    let mut file_objects = Vec::new();
    let mut next = files_at;
    for l in &mut laid {
        if let Some(b) = &l.blob {
            let size = b.len().next_multiple_of(PAGE).max(PAGE);
            l.value = (b.len() as u32).to_le_bytes().to_vec();
            l.value.extend_from_slice(&(next as u64).to_le_bytes());
            file_objects.push((next, size, b.clone()));
            next += size;
        }
    }
    let log_at = next;
    let log_size = 0x8000u64;

    let mut out = vec![0u8; log_at + PAGE];
    // Key tables.
    let mut images = vec![vec![0u8; opts.table_size]; table_count];
    for (i, img) in images.iter_mut().enumerate() {
        img[0..2].copy_from_slice(&2u16.to_le_bytes());
        img[2..4].copy_from_slice(&(i as u16 + 1).to_le_bytes());
        img[4..6].copy_from_slice(&2u16.to_le_bytes());
    }
    let mut keys = Vec::new();
    for l in &laid {
        let (pt, po) = match l.parent {
            Some(p) => (laid[p].table as u16 + 1, laid[p].offset as u32),
            None => (0, 0),
        };
        let len = entry_len(l, opts.pad);
        let mut e = Vec::with_capacity(len);
        e.push(l.kind);
        e.push(l.flags);
        e.extend_from_slice(&(len as u32).to_le_bytes());
        e.extend_from_slice(&pt.to_le_bytes());
        e.extend_from_slice(&po.to_le_bytes());
        e.extend_from_slice(&[0; 4]);
        e.extend_from_slice(&l.insertion.to_le_bytes());
        e.push(l.name.len() as u8);
        e.extend_from_slice(&l.name);
        e.extend_from_slice(&l.value);
        let covered = e.len();
        fix_crc(&mut e, 0, covered, 12);
        e.resize(len, 0);
        images[l.table][l.offset..l.offset + len].copy_from_slice(&e);
        keys.push((
            l.path.clone(),
            (tables_at + l.table * copies * opts.table_size.next_multiple_of(PAGE)) as u64,
        ));
    }
    // The rest of each table: one free entry (or zeros if too small for one).
    let mut ends = vec![10usize; table_count];
    for l in &laid {
        ends[l.table] = ends[l.table].max(l.offset + entry_len(l, opts.pad));
    }
    for (i, img) in images.iter_mut().enumerate() {
        let rest = opts.table_size - ends[i];
        assert!(rest == 0 || rest >= 21);
        if rest >= 21 {
            img[ends[i]] = 1;
            img[ends[i] + 2..ends[i] + 6].copy_from_slice(&(rest as u32).to_le_bytes());
        }
        fix_crc(img, 0, 10, 6);
    }
    // Object table.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let mut table_offsets = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let base = tables_at + i * copies * opts.table_size.next_multiple_of(PAGE);
        if opts.stale_tables {
            // An older copy first: sequence 1, one junk root key.
            let mut old = vec![0u8; opts.table_size];
            old[0..2].copy_from_slice(&2u16.to_le_bytes());
            old[2..4].copy_from_slice(&(i as u16 + 1).to_le_bytes());
            old[4..6].copy_from_slice(&1u16.to_le_bytes());
            fix_crc(&mut old, 0, 10, 6);
            let mut e = vec![8u8, 0];
            let name = b"stale\0";
            let len = 21 + name.len() + 4;
            e.extend_from_slice(&(len as u32).to_le_bytes());
            e.extend_from_slice(&[0; 6]);
            e.extend_from_slice(&[0; 4]);
            e.extend_from_slice(&1u32.to_le_bytes());
            e.push(name.len() as u8);
            e.extend_from_slice(name);
            e.extend_from_slice(&1u32.to_le_bytes());
            fix_crc(&mut e, 0, len, 12);
            old[10..10 + len].copy_from_slice(&e);
            put(&mut out, base, &old);
            objects.push(object_entry(2, base as u64, opts.table_size as u32, true));
            let cur = base + opts.table_size.next_multiple_of(PAGE);
            put(&mut out, cur, img);
            objects.push(object_entry(2, cur as u64, opts.table_size as u32, true));
            table_offsets.push(cur as u64);
        } else {
            put(&mut out, base, img);
            objects.push(object_entry(2, base as u64, opts.table_size as u32, true));
            table_offsets.push(base as u64);
        }
    }
    for (at, size, data) in &file_objects {
        put(&mut out, *at, data);
        objects.push(object_entry(3, *at as u64, *size as u32, true));
    }
    assert!(objects.len() <= OBJECT_ENTRIES);
    let mut ot = Vec::new();
    ot.extend_from_slice(&0x0111_0001u32.to_le_bytes());
    ot.extend_from_slice(&(OBJECT_ENTRIES as u32).to_le_bytes());
    for i in 0..OBJECT_ENTRIES {
        match objects.get(i) {
            Some(e) => ot.extend_from_slice(e),
            None => ot.extend_from_slice(&object_entry(0, 0, 0, false)),
        }
    }
    put(&mut out, OBJECT_TABLE_AT, &ot);
    // Entry offsets were recorded relative to table bases; make them absolute.
    for (k, l) in keys.iter_mut().zip(&laid) {
        k.1 = table_offsets[l.table] + l.offset as u64;
    }

    // Replay log: entries for the key tables if dirty, and always one left-over entry
    // past the count (junk data for the first table), as real files have.
    let mut log_entries: Vec<(u64, Vec<u8>)> = Vec::new();
    if opts.dirty {
        for (i, img) in images.iter().enumerate() {
            log_entries.push((table_offsets[i], img.clone()));
            put(&mut out, table_offsets[i] as usize, &vec![0u8; img.len()]);
        }
    }
    let count = log_entries.len() as u32;
    if let Some(&first) = table_offsets.first() {
        log_entries.push((first, vec![0x5A; 64]));
    }
    let mut lh = Vec::new();
    lh.extend_from_slice(&0x0111_0003u32.to_le_bytes());
    lh.extend_from_slice(&[0; 4]);
    lh.extend_from_slice(&count.to_le_bytes());
    lh.push(0);
    lh.extend_from_slice(&145u32.to_le_bytes());
    lh.extend_from_slice(&[0; 17]);
    fix_crc(&mut lh, 0, 34, 4);
    put(&mut out, log_at, &lh);
    let mut data_at = PAGE;
    for (i, (target, data)) in log_entries.iter().enumerate() {
        let mut e = Vec::new();
        e.extend_from_slice(&target.to_le_bytes());
        e.extend_from_slice(&(data.len() as u32).to_le_bytes());
        e.extend_from_slice(&(data_at as u32).to_le_bytes());
        e.extend_from_slice(&[0; 4]);
        e.extend_from_slice(&[0; 4]);
        e.extend_from_slice(&crc32(data).to_le_bytes());
        fix_crc(&mut e, 0, 28, 20);
        put(&mut out, log_at + 34 + 28 * i, &e);
        put(&mut out, log_at + data_at, data);
        data_at += data.len();
    }
    assert!(data_at as u64 <= log_size);
    // Headers last (they name the log).
    put(&mut out, 0, &header(opts.sequences[0], log_at as u64, log_size));
    put(&mut out, 0x1000, &header(opts.sequences[1], log_at as u64, log_size));
    Written {
        bytes: out,
        tables: table_offsets,
        keys,
        log_offset: log_at as u64,
        file_objects: file_objects.iter().map(|f| f.0 as u64).collect(),
    }
}

/// A VM configuration shaped like the samples': name, ids, creation time, generation,
/// version, a manifest with an IDE or SCSI controller and its drives.
/// `drives`: (controller, drive, type, pathname).
pub fn vm_config(name: &str, id: &str, generation: u8, drives: &[(u32, u32, &str, &str)]) -> Vec<Item> {
    let (ctl_name, instance) = if generation == 1 {
        (
            "Microsoft Emulated IDE Controller",
            "83f8638b-8dca-4152-9eda-2ca8b33039b4",
        )
    } else {
        ("Synthetic SCSI Controller", "dbcf5442-5b2e-4471-9b01-8aa4c5d0d011")
    };
    let mut controllers: Vec<Item> = Vec::new();
    for &(c, d, kind, path) in drives {
        let cname = format!("controller{c}");
        let drive = node(&format!("drive{d}"), vec![text("type", kind), text("pathname", path)]);
        match controllers.iter_mut().find(|i| i.name == cname) {
            Some(Item {
                value: Value::Node(v), ..
            }) => v.push(drive),
            _ => controllers.push(node(&cname, vec![drive])),
        }
    }
    let mut dev = vec![item("VDEVVersion", Value::Int(512))];
    dev.extend(controllers);
    vec![node(
        "configuration",
        vec![
            node(&format!("_{instance}_"), dev),
            node(
                "manifest",
                vec![
                    item("version", Value::Int(512)),
                    node(
                        "vdev001",
                        vec![
                            text("device", "d41a1872-3740-41ce-a1ee-4522ab82f991"),
                            text("instance", "d41a1872-3740-41ce-a1ee-4522ab82f991"),
                            text("name", "Microsoft VmBus"),
                        ],
                    ),
                    node(
                        "vdev002",
                        vec![
                            text("device", instance),
                            text("instance", instance),
                            text("name", ctl_name),
                        ],
                    ),
                ],
            ),
            node(
                "properties",
                vec![
                    text("global_id", id),
                    text("name", name),
                    item("subtype", Value::Int(i64::from(generation) - 1)),
                    text("type_id", "Virtual Machines"),
                    item("version", Value::Int(2304)),
                    // 2023-02-17T17:03:30.381Z, as in the Generation 2 sample.
                    item(
                        "creation_time",
                        Value::Bytes(0x01d942f1c29dc03bu64.to_le_bytes().to_vec()),
                    ),
                ],
            ),
            node("settings", vec![node("global", vec![text("logical_id", id)])]),
        ],
    )]
}
