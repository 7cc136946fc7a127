//! Reading `pg_dump`'s custom archive format as a stream: the header and table of contents,
//! then the data blocks in order.
//!
//! Why: `pg_restore -j` needs a seekable file and loads each table through one connection,
//! so a restore of a database dominated by one table is serial in its biggest step, and it
//! first needs the whole dump spooled to disk. Knowing the format, a restore can run the
//! schema (`--section=pre-data`) and the indexes and constraints (`--section=post-data`)
//! through `pg_restore` from a small file holding only the header and TOC, and stream the
//! table data itself through several `COPY` connections at once, straight from the
//! repository. Anything this reader does not recognise makes the caller fall back to plain
//! `pg_restore`. Must not talk to servers.
//!
//! Format (pg_backup_archiver.c, pg_backup_custom.c): integers are a sign byte then
//! `int_size` little-endian bytes; strings an integer length (-1 for NULL) then bytes.
//! Data blocks are a type byte (1 = table data), the TOC entry's dump id, then chunks of
//! (length, bytes) ended by a zero length.

use std::io::Read;

/// Data block of a table.
pub const BLK_DATA: u8 = 1;
/// Block of large objects: (oid, data chunks) pairs ended by oid 0.
pub const BLK_BLOBS: u8 = 3;

/// One TOC entry, the fields a restore needs.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// Dump id (data blocks refer to it).
    pub dump_id: i64,
    /// Whether it has a data block.
    pub had_dumper: bool,
    /// Object name.
    pub tag: String,
    /// Schema of the object (empty for objects outside schemas).
    pub namespace: String,
    /// Kind: `TABLE DATA`, `SEQUENCE SET`, `INDEX`, …
    pub desc: String,
    /// 1 none, 2 pre-data, 3 data, 4 post-data.
    pub section: i64,
    /// SQL creating the object.
    pub defn: String,
    /// `COPY … FROM stdin;` for table data.
    pub copy_stmt: String,
}

/// Section number of data entries.
pub const SECTION_DATA: i64 = 3;

/// The archive's header and TOC.
#[derive(Clone, Debug)]
pub struct Toc {
    /// Archive version (major, minor, revision).
    pub version: (u8, u8, u8),
    /// Bytes per integer.
    pub int_size: usize,
    /// Whether the archive's data is compressed.
    pub compressed: bool,
    /// Entries in order.
    pub entries: Vec<Entry>,
}

/// Why a stream cannot take the fast path.
#[derive(Debug)]
pub struct Unsupported(pub String);

/// A reader that counts the bytes it consumed.
pub struct Counting<R> {
    inner: R,
    /// Bytes read so far.
    pub count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

impl<R> Counting<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        Counting { inner, count: 0 }
    }
}

fn byte(r: &mut impl Read) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

/// Reads one archive integer.
pub fn int(r: &mut impl Read, size: usize) -> std::io::Result<i64> {
    let sign = byte(r)?;
    let mut v: i64 = 0;
    for i in 0..size {
        let b = byte(r)? as i64;
        if i < 8 {
            v |= b << (8 * i);
        }
    }
    Ok(if sign != 0 { -v } else { v })
}

fn string(r: &mut impl Read, size: usize) -> std::io::Result<Option<String>> {
    let len = int(r, size)?;
    if len < 0 {
        return Ok(None);
    }
    if len > 1 << 30 {
        return Err(std::io::Error::other("string longer than 1 GiB in TOC"));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn s(r: &mut impl Read, size: usize) -> std::io::Result<String> {
    Ok(string(r, size)?.unwrap_or_default())
}

/// Reads the header and TOC of a custom-format archive from the start of `r`.
pub fn read_toc(r: &mut impl Read) -> Result<Toc, Unsupported> {
    let bad = |e: std::io::Error| Unsupported(format!("reading the archive header: {e}"));
    let mut magic = [0u8; 5];
    r.read_exact(&mut magic).map_err(bad)?;
    if &magic != b"PGDMP" {
        return Err(Unsupported("not a pg_dump custom archive".into()));
    }
    let (vmaj, vmin, vrev) = (
        byte(r).map_err(bad)?,
        byte(r).map_err(bad)?,
        byte(r).map_err(bad)?,
    );
    let v = (vmaj, vmin, vrev);
    // 1.12 (PostgreSQL 9.5) through 1.16 (17): the versions whose layout is known here.
    if !((1, 12, 0)..=(1, 16, 0)).contains(&v) {
        return Err(Unsupported(format!("archive version {vmaj}.{vmin}.{vrev}")));
    }
    let int_size = byte(r).map_err(bad)? as usize;
    let _off_size = byte(r).map_err(bad)?;
    let format = byte(r).map_err(bad)?;
    if format != 1 {
        return Err(Unsupported(format!(
            "archive format {format} is not custom"
        )));
    }
    let compressed = if v >= (1, 15, 0) {
        byte(r).map_err(bad)? != 0
    } else {
        int(r, int_size).map_err(bad)? != 0
    };
    for _ in 0..7 {
        int(r, int_size).map_err(bad)?; // creation time
    }
    for _ in 0..3 {
        string(r, int_size).map_err(bad)?; // database, server and pg_dump versions
    }
    let off_size = _off_size as usize;
    let count = int(r, int_size).map_err(bad)?;
    let mut entries = Vec::with_capacity(count.clamp(0, 100_000) as usize);
    for _ in 0..count {
        let mut e = Entry {
            dump_id: int(r, int_size).map_err(bad)?,
            had_dumper: int(r, int_size).map_err(bad)? != 0,
            ..Entry::default()
        };
        s(r, int_size).map_err(bad)?; // table oid
        s(r, int_size).map_err(bad)?; // oid
        e.tag = s(r, int_size).map_err(bad)?;
        e.desc = s(r, int_size).map_err(bad)?;
        e.section = int(r, int_size).map_err(bad)?;
        e.defn = s(r, int_size).map_err(bad)?;
        s(r, int_size).map_err(bad)?; // drop statement
        e.copy_stmt = s(r, int_size).map_err(bad)?;
        e.namespace = s(r, int_size).map_err(bad)?;
        s(r, int_size).map_err(bad)?; // tablespace
        if v >= (1, 14, 0) {
            s(r, int_size).map_err(bad)?; // table access method
        }
        if v >= (1, 16, 0) {
            int(r, int_size).map_err(bad)?; // relkind
        }
        s(r, int_size).map_err(bad)?; // owner
        s(r, int_size).map_err(bad)?; // "false" (WITH OIDS)
        while string(r, int_size).map_err(bad)?.is_some() {} // dependencies
        // Custom format: the data offset (a flag byte, then off_size bytes).
        byte(r).map_err(bad)?;
        for _ in 0..off_size {
            byte(r).map_err(bad)?;
        }
        entries.push(e);
    }
    Ok(Toc {
        version: v,
        int_size,
        compressed,
        entries,
    })
}

/// Whether [`count_data`] can count this archive's rows, known from its TOC alone.
pub fn countable(toc: &Toc) -> Result<(), Unsupported> {
    if toc.compressed {
        return Err(Unsupported("the archive is compressed".into()));
    }
    // Table names are compared with the catalog's, read over a UTF-8 connection.
    let utf8 = toc
        .entries
        .iter()
        .any(|e| e.desc == "ENCODING" && e.defn.contains("'UTF8'"));
    if !utf8 {
        return Err(Unsupported("the archive's encoding is not UTF-8".into()));
    }
    Ok(())
}

/// Reads the data blocks that follow the TOC and counts the rows of every table's data:
/// `(schema, table) -> rows`. In `COPY`'s text format, which `pg_dump` writes, every row ends
/// in a newline and newlines inside values are escaped, so rows are newline bytes, up to the
/// end-of-data line `\.` that `pg_dump` writes after the rows (followed by blank lines). A
/// value `\.` is written `\\.`, so a line that is exactly `\.` is always that marker. Counting
/// what the dump holds, rather than asking the server again, costs no second scan of every
/// table and cannot disagree with the dump (a `TRUNCATE` racing a later `count(*)` would).
/// Call [`countable`] on the TOC first.
pub fn count_data(
    r: &mut impl Read,
    toc: &Toc,
) -> Result<std::collections::HashMap<(String, String), u64>, Unsupported> {
    let bad = |e: std::io::Error| Unsupported(format!("reading the archive's data: {e}"));
    let tables: std::collections::HashMap<i64, (String, String)> = toc
        .entries
        .iter()
        .filter(|e| e.desc == "TABLE DATA")
        .map(|e| (e.dump_id, (e.namespace.clone(), e.tag.clone())))
        .collect();
    let mut counts = std::collections::HashMap::new();
    let mut buf = vec![0u8; 1 << 16];
    // Skips (or counts the rows of) chunks up to the zero length that ends them.
    let mut chunks = |mut r: &mut dyn Read, mut lines: Option<&mut u64>| -> std::io::Result<()> {
        let (mut tail, mut seen) = (Vec::with_capacity(64), 0usize);
        loop {
            let mut len = int(&mut r, toc.int_size)?;
            if len == 0 {
                if let Some(l) = lines {
                    *l -= end_marker_lines(&tail, seen == tail.len());
                }
                return Ok(());
            }
            if !(0..=1 << 30).contains(&len) {
                return Err(std::io::Error::other("chunk length out of range"));
            }
            while len > 0 {
                let n = (len as usize).min(buf.len());
                r.read_exact(&mut buf[..n])?;
                if let Some(l) = lines.as_deref_mut() {
                    *l += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                    // The last bytes of the data so far, where the end marker would be.
                    tail.extend_from_slice(&buf[n.saturating_sub(32)..n]);
                    seen += n;
                    tail.drain(..tail.len().saturating_sub(32));
                }
                len -= n as i64;
            }
        }
    };
    loop {
        let mut kind = [0u8; 1];
        match r.read(&mut kind) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(bad(e)),
        }
        let id = int(r, toc.int_size).map_err(bad)?;
        match kind[0] {
            BLK_DATA => {
                let mut n = 0u64;
                chunks(r, Some(&mut n)).map_err(bad)?;
                if let Some(t) = tables.get(&id) {
                    *counts.entry(t.clone()).or_insert(0) += n;
                }
            }
            BLK_BLOBS => loop {
                if int(r, toc.int_size).map_err(bad)? == 0 {
                    break;
                }
                chunks(r, None).map_err(bad)?;
            },
            k => return Err(Unsupported(format!("data block type {k}"))),
        }
    }
    Ok(counts)
}

/// The newlines at the end of a table's data that belong to the end marker: its own and
/// the blank lines after it; 0 when the data does not end with one. `tail` is the data's
/// last bytes, `complete` whether it is all of the data.
fn end_marker_lines(tail: &[u8], complete: bool) -> u64 {
    let body = tail.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
    let start = tail[..body].iter().rposition(|&b| b == b'\n');
    // A whole line: after a newline, or at the very start of the data.
    let whole = start.is_some() || complete;
    let last_line = &tail[start.map_or(0, |i| i + 1)..body];
    if body < tail.len() && whole && last_line == b"\\." {
        (tail.len() - body) as u64
    } else {
        0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The whole archive: TOC, then rows.
    fn count_rows(
        r: &mut impl Read,
    ) -> Result<std::collections::HashMap<(String, String), u64>, Unsupported> {
        let toc = read_toc(r)?;
        countable(&toc)?;
        count_data(r, &toc)
    }

    pub(crate) fn w_int(out: &mut Vec<u8>, v: i64) {
        out.push(u8::from(v < 0));
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
    }
    fn w_str(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => w_int(out, -1),
            Some(s) => {
                w_int(out, s.len() as i64);
                out.extend_from_slice(s.as_bytes());
            }
        }
    }

    /// Header and TOC of an uncompressed archive: one table's data entry (dump id 7), then
    /// the client encoding (`encoding`, if any).
    fn handmade_in(encoding: Option<&str>) -> Vec<u8> {
        let mut a = b"PGDMP".to_vec();
        a.extend_from_slice(&[1, 14, 0, 4, 8, 1]);
        w_int(&mut a, 0); // not compressed
        for _ in 0..7 {
            w_int(&mut a, 1);
        }
        for s in ["hotel", "15.18", "15.18"] {
            w_str(&mut a, Some(s));
        }
        let set = encoding.map(|e| format!("SET client_encoding = '{e}';\n"));
        let entries = [
            (
                7,
                "bookings",
                "TABLE DATA",
                SECTION_DATA,
                "",
                "COPY public.bookings (id) FROM stdin;\n",
                "public",
            ),
            (
                1,
                "ENCODING",
                "ENCODING",
                2,
                set.as_deref().unwrap_or(""),
                "",
                "",
            ),
        ];
        let n = if encoding.is_some() { 2 } else { 1 };
        w_int(&mut a, n);
        for (id, tag, desc, section, defn, copy, ns) in &entries[..n as usize] {
            w_int(&mut a, *id);
            w_int(&mut a, 1);
            for s in [Some("0"), Some("0"), Some(*tag), Some(*desc)] {
                w_str(&mut a, s);
            }
            w_int(&mut a, *section);
            for s in [
                Some(*defn),
                Some(""),
                Some(*copy),
                Some(*ns),
                None,
                Some("heap"),
                Some("postgres"),
                Some("false"),
                Some("5"),
                None,
            ] {
                w_str(&mut a, s);
            }
            a.push(2);
            a.extend_from_slice(&[0; 8]);
        }
        a
    }

    pub(crate) fn handmade() -> Vec<u8> {
        handmade_in(Some("UTF8"))
    }

    #[test]
    fn reads_a_handmade_archive_header_and_toc() {
        let mut a = handmade();
        let len = a.len() as u64;
        a.extend_from_slice(b"rest");
        let mut r = Counting::new(&a[..]);
        let toc = read_toc(&mut r).unwrap();
        assert_eq!(r.count, len);
        assert_eq!(toc.entries.len(), 2);
        let e = &toc.entries[0];
        assert_eq!(
            (e.dump_id, e.desc.as_str(), e.tag.as_str()),
            (7, "TABLE DATA", "bookings")
        );
        assert!(e.copy_stmt.starts_with("COPY public.bookings"));
        assert!(!toc.compressed);
        assert!(read_toc(&mut &b"PGDMX"[..]).is_err());
    }

    #[test]
    fn the_end_marker_is_not_a_row() {
        assert_eq!(end_marker_lines(b"\\.\n\n\n", true), 3);
        assert_eq!(end_marker_lines(b"\\.\n\n\n", false), 0, "maybe x\\.");
        assert_eq!(end_marker_lines(b"a\n\n\\.\n", false), 1);
        assert_eq!(end_marker_lines(b"a\n\\\\.\n", true), 0, "a value \\.");
        assert_eq!(end_marker_lines(b"a\nb\n", true), 0);
        assert_eq!(end_marker_lines(b"", true), 0);
        assert_eq!(end_marker_lines(b"\n\n", true), 0, "two empty rows");
    }

    #[test]
    fn counts_rows_across_chunks_and_skips_large_objects() {
        let mut a = handmade();
        a.push(BLK_DATA);
        w_int(&mut a, 7);
        for chunk in ["1\tAda\n2\tB", "ob\n3\tline\\nbreak\n\\", ".\n\n\n"] {
            w_int(&mut a, chunk.len() as i64);
            a.extend_from_slice(chunk.as_bytes());
        }
        w_int(&mut a, 0);
        a.push(BLK_BLOBS);
        w_int(&mut a, 9);
        w_int(&mut a, 16384); // a large object's oid, then its data
        w_int(&mut a, 3);
        a.extend_from_slice(b"x\ny");
        w_int(&mut a, 0);
        w_int(&mut a, 0); // no more large objects
        let counts = count_rows(&mut &a[..]).unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[&("public".to_string(), "bookings".to_string())], 3);

        let mut truncated = handmade();
        truncated.push(BLK_DATA);
        w_int(&mut truncated, 7);
        w_int(&mut truncated, 10);
        truncated.extend_from_slice(b"1\n");
        assert!(count_rows(&mut &truncated[..]).is_err());
        let mut odd = handmade();
        odd.push(4);
        w_int(&mut odd, 7);
        assert!(count_rows(&mut &odd[..]).is_err());
        // Names in another encoding would not match the catalog's: no counts.
        assert!(count_rows(&mut &handmade_in(Some("LATIN1"))[..]).is_err());
        assert!(count_rows(&mut &handmade_in(None)[..]).is_err());
    }
}
