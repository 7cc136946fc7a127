//! Columns: a segment of text rows laid out column by column before it is compressed.
//!
//! Owns one reversible transform of a segment's plaintext (`pack`'s encoding `2`): runs of
//! rows (lines with the same number of tab-separated fields) are stored field by field, all
//! the first fields of the run, then all the second ones, and so on; everything else passes
//! as it is. Must not know what the rows are: any bytes round-trip exactly (the chunks' keyed
//! hashes are checked after [`restore`] as after any decompression), and a run can start or
//! end anywhere.
//!
//! Why: a logical backup is mostly `COPY` text, one row per line. zstd's fast levels find
//! the long matches between whole rows but miss the short ones between the same column of
//! neighbouring rows (an id one more than the last, a timestamp sharing its date, a word
//! of a note), which gzip's deeper search finds: on varied hotel data strongroom stored 1.09x
//! what `pg_dump -Fc | gzip` stores. Laid out by column, each field sits beside the same
//! field of the rows around it, where zstd level 1 finds those matches. Measured on the
//! `COPY` text of 400,000 varied bookings (50.9 MB) in 1 MiB blocks: zstd level 1 stored
//! 16.85 MB as rows and 13.92 MB as columns (level 3: 15.93 and 13.28), where gzip -6 of the
//! whole stored 15.20 MB.
//!
//! Layout: a varint count of items, then each item's header (a varint `v`: `v` even, a
//! literal of `v / 2` bytes; `v` odd, a run of `v / 2` rows followed by a varint field
//! count), then the items' bodies in order: a literal's bytes; a run's columns, each field
//! followed by `\n` (no field holds a `\n` or a `\t`: they are what split the rows).

use memchr::{memchr, memchr_iter};

/// Fewest consecutive rows with the same number of fields laid out as columns: fewer gain
/// less than their headers cost.
const MIN_ROWS: usize = 8;

/// Share of a segment that must be rows for the layout to be worth its two passes.
const MIN_SHARE_PERCENT: usize = 50;

enum Item {
    Literal(usize, usize),
    Run {
        start: usize,
        end: usize,
        rows: usize,
        fields: usize,
    },
}

/// `raw` laid out by columns, or `None` when less than half of it is runs of rows (the
/// caller stores it as it is).
pub fn transpose(raw: &[u8]) -> Option<Vec<u8>> {
    let items = plan(raw);
    let in_runs: usize = items
        .iter()
        .map(|i| match i {
            Item::Run { start, end, .. } => end - start,
            Item::Literal(..) => 0,
        })
        .sum();
    if in_runs == 0 || in_runs * 100 < raw.len() * MIN_SHARE_PERCENT {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len() + 64);
    put_varint(&mut out, items.len() as u64);
    for item in &items {
        match *item {
            Item::Literal(s, e) => put_varint(&mut out, ((e - s) as u64) << 1),
            Item::Run { rows, fields, .. } => {
                put_varint(&mut out, ((rows as u64) << 1) | 1);
                put_varint(&mut out, fields as u64);
            }
        }
    }
    let mut bounds: Vec<u32> = Vec::new();
    for item in &items {
        match *item {
            Item::Literal(s, e) => out.extend_from_slice(&raw[s..e]),
            Item::Run {
                start,
                end,
                rows,
                fields,
            } => {
                // Where each field starts, and one past each row's `\n`, row by row.
                bounds.clear();
                bounds.reserve(rows * (fields + 1));
                let mut at = start;
                for _ in 0..rows {
                    bounds.push(at as u32);
                    let nl = at + memchr(b'\n', &raw[at..end]).expect("a run holds whole rows");
                    bounds.extend(memchr_iter(b'\t', &raw[at..nl]).map(|t| (at + t + 1) as u32));
                    at = nl + 1;
                }
                bounds.push(at as u32);
                // bounds[r * fields + c] starts field c of row r; the next bound is one
                // past its separator.
                for c in 0..fields {
                    for r in 0..rows {
                        let i = r * fields + c;
                        let (s, e) = (bounds[i] as usize, bounds[i + 1] as usize - 1);
                        out.extend_from_slice(&raw[s..e]);
                        out.push(b'\n');
                    }
                }
            }
        }
    }
    Some(out)
}

/// The runs of rows in `raw`, and the literals between them.
fn plan(raw: &[u8]) -> Vec<Item> {
    let mut p = Planner::default();
    let mut at = 0;
    for nl in memchr_iter(b'\n', raw) {
        let fields = 1 + memchr_iter(b'\t', &raw[at..nl]).count();
        if fields == p.fields && p.rows > 0 {
            p.rows += 1;
        } else {
            p.close(at);
            (p.start, p.fields, p.rows) = (at, fields, 1);
        }
        at = nl + 1;
    }
    p.close(at);
    if p.literal_from < raw.len() {
        p.items.push(Item::Literal(p.literal_from, raw.len()));
    }
    // Plans stay valid for u32 bounds: segments are far below 4 GiB (pack::MAX_SEGMENT).
    debug_assert!(raw.len() < u32::MAX as usize);
    p.items
}

/// What [`plan`] has found so far: the items, where the pending literal starts, and the
/// current run of rows with the same number of fields (its start, field count and rows).
#[derive(Default)]
struct Planner {
    items: Vec<Item>,
    literal_from: usize,
    start: usize,
    fields: usize,
    rows: usize,
}

impl Planner {
    /// Ends the current run at `end`: a run when it is long enough, else its rows stay in
    /// the pending literal.
    fn close(&mut self, end: usize) {
        if self.rows >= MIN_ROWS && self.fields >= 2 {
            if self.literal_from < self.start {
                self.items
                    .push(Item::Literal(self.literal_from, self.start));
            }
            self.items.push(Item::Run {
                start: self.start,
                end,
                rows: self.rows,
                fields: self.fields,
            });
            self.literal_from = end;
        }
    }
}

/// The bytes [`transpose`] was given, or `None` when `laid` is not its output.
///
/// Every byte of the body comes out once (a field's `\n` becomes its row's `\t` or `\n`),
/// so the output never grows past the body's size: one scan for the ends of all of a run's
/// fields, then each field copied as a fixed 16 bytes when it is shorter (most are), cut
/// back to its length, the next field taking the excess's place.
pub fn restore(laid: &[u8]) -> Option<Vec<u8>> {
    let mut header = laid;
    let count = take_varint(&mut header)?;
    let mut heads = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let v = take_varint(&mut header)?;
        if v & 1 == 0 {
            heads.push((usize::try_from(v >> 1).ok()?, None));
        } else {
            let fields = usize::try_from(take_varint(&mut header)?).ok()?;
            heads.push((usize::try_from(v >> 1).ok()?, Some(fields)));
        }
    }
    let mut body = header;
    // Room for the body and one short field's excess: never reallocated.
    let mut out = Vec::with_capacity(body.len() + SHORT_FIELD);
    let mut ends: Vec<u32> = Vec::new();
    for (n, fields) in heads {
        match fields {
            None => {
                out.extend_from_slice(body.get(..n)?);
                body = &body[n..];
            }
            Some(fields) => {
                if fields == 0 || n == 0 {
                    return None;
                }
                // The end of every field, column after column: field c of row r ends at
                // ends[c * n + r].
                ends.clear();
                if !field_ends(body, n.checked_mul(fields)?, &mut ends) {
                    return None;
                }
                for r in 0..n {
                    for c in 0..fields {
                        let i = c * n + r;
                        let start = if i == 0 { 0 } else { ends[i - 1] as usize + 1 };
                        let end = ends[i] as usize;
                        if end - start <= SHORT_FIELD && start + SHORT_FIELD <= body.len() {
                            let at = out.len();
                            out.extend_from_slice(&body[start..start + SHORT_FIELD]);
                            out.truncate(at + end - start);
                        } else {
                            out.extend_from_slice(&body[start..end]);
                        }
                        out.push(if c + 1 == fields { b'\n' } else { b'\t' });
                    }
                }
                body = &body[*ends.last()? as usize + 1..];
            }
        }
    }
    body.is_empty().then_some(out)
}

/// Fields up to this long are copied as a fixed 16 bytes (one unaligned load and store).
const SHORT_FIELD: usize = 16;

/// Pushes onto `ends` the offsets of the first `want` newlines of `body`; false when it has
/// fewer. Eight bytes at a time: one `memchr` call per field costs more than the short
/// fields of a dump.
fn field_ends(body: &[u8], want: usize, ends: &mut Vec<u32>) -> bool {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    // Every field holds at least its `\n`: a damaged count cannot ask for more than that.
    ends.reserve(want.min(body.len()));
    let mut words = body.chunks_exact(8);
    let mut base = 0u32;
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ NEWLINES;
        // The high bit of each byte that was a newline, exactly (no borrow between bytes).
        let mut hits = !(((x & LOW7) + LOW7) | x | LOW7);
        while hits != 0 {
            ends.push(base + hits.trailing_zeros() / 8);
            if ends.len() == want {
                return true;
            }
            hits &= hits - 1;
        }
        base += 8;
    }
    for (k, &b) in words.remainder().iter().enumerate() {
        if b == b'\n' {
            ends.push(base + k as u32);
            if ends.len() == want {
                return true;
            }
        }
    }
    false
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rows(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend_from_slice(
                format!(
                    "{i}\t{}\troom {}\t2026-12-0{} 10:{:02}:00\n",
                    1000 + i,
                    i % 7,
                    i % 9,
                    i % 60
                )
                .as_bytes(),
            );
        }
        v
    }

    #[test]
    fn rows_round_trip_column_by_column() {
        // A run cut mid-row at both ends, with bytes of another shape between two runs.
        let mut raw = b"\x00\x01\tpartial row\n".to_vec();
        raw.extend(rows(100));
        raw.extend_from_slice(b"PGDMP\x01\x0e\n\xff\xfe\n");
        raw.extend(rows(50));
        raw.extend_from_slice(b"17\t1017\troom");
        let laid = transpose(&raw).expect("mostly rows");
        assert_ne!(laid, raw);
        // Column by column: the first fields of the first run come in a row.
        assert!(
            laid.windows(12).any(|w| w == b"0\n1\n2\n3\n4\n5\n"),
            "ids laid out together"
        );
        assert_eq!(restore(&laid).as_deref(), Some(&raw[..]));
    }

    #[test]
    fn bytes_that_are_not_rows_are_left_to_the_caller() {
        assert!(transpose(b"").is_none());
        assert!(transpose(&[7u8; 4096]).is_none());
        let mut few = rows(5);
        few.extend([0u8; 1000]);
        assert!(transpose(&few).is_none());
    }

    #[test]
    fn damaged_layouts_are_refused_not_misread() {
        let raw = rows(40);
        let laid = transpose(&raw).unwrap();
        for cut in [0, 1, laid.len() / 2, laid.len() - 1] {
            assert_eq!(restore(&laid[..cut]), None, "cut at {cut}");
        }
        let mut longer = laid.clone();
        longer.push(b'x');
        assert_eq!(restore(&longer), None);
    }

    /// Hand-run: `cargo test --release -p strongroom --lib -- --ignored --nocapture
    /// columns_speed`. Throughput of both directions on 64 MiB of booking-like rows, in
    /// segments of 1 MiB, and the sizes zstd level 1 makes of them.
    #[test]
    #[ignore]
    fn columns_speed() {
        let words = [
            "late", "arrival", "needs", "a", "baby", "cot", "quiet", "room", "sea",
        ];
        let mut text = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut i = 0u64;
        while text.len() < 64 << 20 {
            i += 1;
            let r = next();
            let note: Vec<&str> = (0..3 + r % 20)
                .map(|k| words[((r >> (k % 50)) % 9) as usize])
                .collect();
            text.extend_from_slice(
                format!(
                    "{i}\t{}\t{}\tconfirmed\t{}\t{}\t2024-0{}-{:02} {:02}:{:02}:{:02}.{:06}+00\t{}\n",
                    r % 20000,
                    (r >> 16) % 20000,
                    1 + (r >> 32) % 4,
                    8000 + (r >> 20) % 90000,
                    1 + (i / 500_000) % 9,
                    1 + (i / 20_000) % 28,
                    (r >> 8) % 24,
                    (r >> 13) % 60,
                    (r >> 19) % 60,
                    (r >> 25) % 1_000_000,
                    note.join(" ")
                )
                .as_bytes(),
            );
        }
        let blocks: Vec<&[u8]> = text.chunks_exact(1 << 20).collect();
        let t = std::time::Instant::now();
        let laid: Vec<Vec<u8>> = blocks.iter().map(|b| transpose(b).unwrap()).collect();
        let forward = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for (l, b) in laid.iter().zip(&blocks) {
            assert_eq!(restore(l).as_deref(), Some(*b));
        }
        let back = t.elapsed().as_secs_f64();
        let mb = (blocks.len() << 20) as f64 / 1e6;
        let z = |v: &[u8]| zstd::bulk::compress(v, 1).unwrap().len();
        let rows: usize = blocks.iter().map(|b| z(b)).sum();
        let cols: usize = laid.iter().map(|l| z(l)).sum();
        println!(
            "{mb:.0} MB: transpose {:.0} MB/s, restore {:.0} MB/s; zstd 1: {:.2} MB as rows, {:.2} MB as columns",
            mb / forward,
            mb / back,
            rows as f64 / 1e6,
            cols as f64 / 1e6
        );
    }

    proptest! {
        /// Any bytes: what is laid out comes back exactly. Drawn from a small alphabet so
        /// runs of rows appear often, with the shapes a real dump mixes in.
        #[test]
        fn any_bytes_round_trip(
            parts in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(prop_oneof![Just(b'\t'), Just(b'\n'), Just(b'a'), Just(b'1'), any::<u8>()], 0..64),
                    (1usize..30).prop_map(rows),
                ],
                0..12,
            )
        ) {
            let raw: Vec<u8> = parts.concat();
            if let Some(laid) = transpose(&raw) {
                prop_assert_eq!(restore(&laid), Some(raw));
            }
        }
    }
}
