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

/// One TOC entry, the fields a restore needs.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// Dump id (data blocks refer to it).
    pub dump_id: i64,
    /// Whether it has a data block.
    pub had_dumper: bool,
    /// Object name.
    pub tag: String,
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
        s(r, int_size).map_err(bad)?; // namespace
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

#[cfg(test)]
mod tests {
    use super::*;

    fn w_int(out: &mut Vec<u8>, v: i64) {
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

    #[test]
    fn reads_a_handmade_archive_header_and_toc() {
        let mut a = b"PGDMP".to_vec();
        a.extend_from_slice(&[1, 14, 0, 4, 8, 1]);
        w_int(&mut a, 0); // not compressed
        for _ in 0..7 {
            w_int(&mut a, 1);
        }
        for s in ["hotel", "15.18", "15.18"] {
            w_str(&mut a, Some(s));
        }
        w_int(&mut a, 1);
        w_int(&mut a, 7);
        w_int(&mut a, 1);
        for s in [Some("0"), Some("0"), Some("bookings"), Some("TABLE DATA")] {
            w_str(&mut a, s);
        }
        w_int(&mut a, SECTION_DATA);
        for s in [
            Some(""),
            Some(""),
            Some("COPY public.bookings (id) FROM stdin;\n"),
            Some("public"),
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
        let len = a.len() as u64;
        a.extend_from_slice(b"rest");
        let mut r = Counting::new(&a[..]);
        let toc = read_toc(&mut r).unwrap();
        assert_eq!(r.count, len);
        assert_eq!(toc.entries.len(), 1);
        let e = &toc.entries[0];
        assert_eq!(
            (e.dump_id, e.desc.as_str(), e.tag.as_str()),
            (7, "TABLE DATA", "bookings")
        );
        assert!(e.copy_stmt.starts_with("COPY public.bookings"));
        assert!(!toc.compressed);
        assert!(read_toc(&mut &b"PGDMX"[..]).is_err());
    }
}
