//! Run files: writing one from sorted records, opening it by its fences, lookups and scans.
//! Must not change a run once it is written: runs are immutable, replaced whole.

use super::*;
// ---------------------------------------------------------------------------------------------
// Runs

thread_local! {
    /// Each thread's block buffer for single lookups (one block, 6.6 KiB for the index).
    static BLOCK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's block buffer (a fresh one if it is in use already).
pub(super) fn with_block<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    BLOCK.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let r = f(&mut buf);
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Records [`Run::read_near`] reads on either side of a key's interpolated place.
const NEAR: u64 = 16;

/// Writes one run file from records in ascending order, under a temporary name until
/// [`RunWriter::finish`] renames it into place.
pub struct RunWriter<const V: usize> {
    pub(super) path: PathBuf,
    pub(super) tmp: PathBuf,
    pub(super) out: Option<BufWriter<File>>,
    pub(super) block_records: u32,
    pub(super) count: u64,
    pub(super) fences: Vec<u64>,
    pub(super) last: Option<Record<V>>,
    pub(super) sum: Checksum,
    /// BLAKE3 of every byte written so far.
    pub(super) hash: blake3::Hasher,
    pub(super) renamed: bool,
}

impl<const V: usize> RunWriter<V> {
    /// Starts a run that will be at `path`, with a fence every `block_records` records.
    pub fn create(path: &Path, block_records: u32) -> io::Result<Self> {
        if block_records == 0 {
            return Err(invalid_input("block_records must be at least 1"));
        }
        let tmp = tmp_path(path);
        let file = create_private(&tmp)?;
        Ok(RunWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            block_records,
            count: 0,
            fences: Vec::new(),
            last: None,
            sum: Checksum::new(),
            hash: blake3::Hasher::new(),
            renamed: false,
        })
    }

    /// Appends a record: ascending (key, value) order is required, an exact repeat is skipped.
    pub fn push(&mut self, key: &Key, value: &[u8; V]) -> io::Result<()> {
        if let Some((k, v)) = &self.last {
            match (key, value).cmp(&(k, v)) {
                Ordering::Less => return Err(invalid_input("run records out of order")),
                Ordering::Equal => return Ok(()),
                Ordering::Greater => {}
            }
        }
        let out = self.out.as_mut().expect("writer in use");
        if self.count % u64::from(self.block_records) == 0 {
            self.fences.push(prefix(key));
        }
        out.write_all(key)?;
        out.write_all(value)?;
        self.sum.update(key);
        self.sum.update(value);
        self.hash.update(key);
        self.hash.update(value);
        self.count += 1;
        self.last = Some((*key, *value));
        Ok(())
    }

    /// Records pushed so far (exact repeats not counted).
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether no record was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the fences and footer, renames the file into place and opens it.
    pub fn finish(mut self) -> io::Result<Run<V>> {
        let mut out = self.out.take().expect("writer in use");
        let mut tail = Vec::with_capacity(self.fences.len() * 8 + FOOTER_LEN);
        for f in &self.fences {
            tail.extend_from_slice(&f.to_be_bytes());
        }
        tail.extend_from_slice(RUN_MAGIC);
        tail.extend_from_slice(&(V as u32).to_le_bytes());
        tail.extend_from_slice(&self.block_records.to_le_bytes());
        tail.extend_from_slice(&self.count.to_le_bytes());
        tail.extend_from_slice(&self.sum.finish().to_le_bytes());
        let tail_sum = checksum(&tail);
        tail.extend_from_slice(&tail_sum.to_le_bytes());
        out.write_all(&tail)?;
        self.hash.update(&tail);
        // The descriptor written is the one read from: nothing is opened by name again.
        let file = out.into_inner().map_err(|e| e.into_error())?;
        fs::rename(&self.tmp, &self.path)?;
        self.renamed = true;
        Ok(Run {
            path: std::mem::take(&mut self.path),
            file,
            count: self.count,
            block_records: self.block_records,
            fences: std::mem::take(&mut self.fences).into(),
            records_sum: self.sum.finish(),
            hash: *self.hash.finalize().as_bytes(),
        })
    }
}

impl<const V: usize> Drop for RunWriter<V> {
    fn drop(&mut self) {
        // Not finished (an error, or dropped on purpose): the temporary file goes.
        if !self.renamed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// An immutable run file of sorted records, with its fences in memory.
pub struct Run<const V: usize> {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) count: u64,
    pub(super) block_records: u32,
    pub(super) fences: Arc<[u64]>,
    pub(super) records_sum: u64,
    /// BLAKE3 of the whole file, as its writer computed it or a table manifest names it
    /// (all zeros for a run opened on its own: its hash is then unknown).
    pub(super) hash: [u8; 32],
}

impl<const V: usize> Run<V> {
    /// Opens a run file (never through a link), reading and checking only its fences and
    /// footer.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = open_nofollow(path)?;
        let size = file.metadata()?.len();
        if size < FOOTER_LEN as u64 {
            return Err(invalid(format!("{}: too short for a run", path.display())));
        }
        let mut footer = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut footer, size - FOOTER_LEN as u64)?;
        if &footer[..8] != RUN_MAGIC {
            return Err(invalid(format!("{}: not a run file", path.display())));
        }
        let value_len = u32::from_le_bytes(footer[8..12].try_into().expect("4 bytes"));
        let block_records = u32::from_le_bytes(footer[12..16].try_into().expect("4 bytes"));
        let count = u64::from_le_bytes(footer[16..24].try_into().expect("8 bytes"));
        let records_sum = u64::from_le_bytes(footer[24..32].try_into().expect("8 bytes"));
        let tail_sum = u64::from_le_bytes(footer[32..40].try_into().expect("8 bytes"));
        if value_len as usize != V || block_records == 0 {
            return Err(invalid(format!(
                "{}: value length {value_len}, block {block_records}; expected value length {V}",
                path.display()
            )));
        }
        let blocks = count.div_ceil(u64::from(block_records));
        let records_end = count.checked_mul(record_len(V) as u64);
        let expected = records_end
            .and_then(|r| r.checked_add(blocks.checked_mul(8)?))
            .and_then(|r| r.checked_add(FOOTER_LEN as u64));
        let (Some(records_end), Some(expected)) = (records_end, expected) else {
            return Err(invalid(format!(
                "{}: impossible record count",
                path.display()
            )));
        };
        if expected != size {
            return Err(invalid(format!(
                "{}: {size} bytes, its footer says {expected}",
                path.display()
            )));
        }
        let mut tail = vec![0u8; blocks as usize * 8 + FOOTER_LEN - 8];
        file.read_exact_at(&mut tail, records_end)?;
        if checksum(&tail) != tail_sum {
            return Err(invalid(format!(
                "{}: fences fail their checksum",
                path.display()
            )));
        }
        let fences: Arc<[u64]> = tail[..blocks as usize * 8]
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(Run {
            path: path.to_path_buf(),
            file,
            count,
            block_records,
            fences,
            records_sum,
            hash: [0; 32],
        })
    }

    /// Reads the whole file once, 1 MiB at a time, through the descriptor lookups use, and
    /// checks it against `expected` (its BLAKE3 hash).
    pub(super) fn check_hash(&self, expected: &[u8; 32]) -> io::Result<()> {
        let size = self.file.metadata()?.len();
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; ITER_BUFFER];
        let mut pos = 0u64;
        while pos < size {
            let n = (size - pos).min(ITER_BUFFER as u64) as usize;
            self.file.read_exact_at(&mut buf[..n], pos)?;
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        if hasher.finalize() != *expected {
            return Err(invalid(format!(
                "{}: its content is not what the table manifest names",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Where the run file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the run holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The blocks (first and last, inclusive) that can hold `key`, or none.
    pub(super) fn blocks_for(&self, key: &Key) -> Option<(usize, usize)> {
        let p = prefix(key);
        // Blocks whose first key's prefix is ≤ p; the key can only be in one of them.
        let upto = self.fences.partition_point(|&f| f <= p);
        if upto == 0 {
            return None;
        }
        // Blocks starting with prefix p may be preceded by a block whose tail has it too.
        let first_eq = self.fences.partition_point(|&f| f < p);
        Some((first_eq.saturating_sub(1), upto - 1))
    }

    pub(super) fn read_blocks(
        &self,
        first: usize,
        last: usize,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        let rec = record_len(V) as u64;
        let b = u64::from(self.block_records);
        let start = first as u64 * b;
        let end = ((last as u64 + 1) * b).min(self.count);
        buf.resize(((end - start) * rec) as usize, 0);
        self.file.read_exact_at(buf, start * rec)
    }

    /// Reads into `buf` the records around where `key` should sit in block `block`, and says
    /// whether they surely hold every record of `key` (else the caller reads the block).
    /// Keys are uniform hashes, so a key's place in its block is about where its prefix
    /// falls between the block's fence and the next: of 128 records, within ±6 of it on
    /// average at worst, so [`NEAR`] records either side nearly always do. Sure means the
    /// window's first key is below `key` (or the window starts the block) and its last above
    /// it (or ends the block). A lookup copies 1.7 KiB from the page cache instead of the
    /// 6.6 KiB block: restores look up every chunk they write.
    pub(super) fn read_near(&self, block: usize, key: &Key, buf: &mut Vec<u8>) -> io::Result<bool> {
        let rec = record_len(V);
        let b = u64::from(self.block_records);
        let start = block as u64 * b;
        let n = self.count.saturating_sub(start).min(b);
        let lo = self.fences[block];
        let hi = self.fences.get(block + 1).copied().unwrap_or(u64::MAX);
        let p = prefix(key);
        let est = if hi > lo {
            (u128::from(p.saturating_sub(lo)) * u128::from(n) / u128::from(hi - lo)) as u64
        } else {
            0
        };
        let from = est.saturating_sub(NEAR).min(n);
        let to = (est + NEAR + 1).min(n);
        buf.resize((to - from) as usize * rec, 0);
        self.file.read_exact_at(buf, (start + from) * rec as u64)?;
        if buf.is_empty() {
            return Ok(false);
        }
        let below = from == 0 || buf[..32] < key[..];
        let above = to == n || buf[buf.len() - rec..][..32] > key[..];
        Ok(below && above)
    }

    /// Appends the values stored under `key` in `records` (whole records, sorted) to `out`.
    pub(super) fn search(records: &[u8], key: &Key, out: &mut Vec<[u8; V]>) {
        let rec = record_len(V);
        let n = records.len() / rec;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if records[mid * rec..mid * rec + 32] < key[..] {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for r in records[lo * rec..].chunks_exact(rec) {
            if r[..32] != key[..] {
                break;
            }
            out.push(split_record::<V>(r).1);
        }
    }

    /// Appends the values stored under `key` to `out`, in ascending order.
    pub(super) fn get_into(
        &self,
        key: &Key,
        buf: &mut Vec<u8>,
        out: &mut Vec<[u8; V]>,
    ) -> io::Result<()> {
        if let Some((first, last)) = self.blocks_for(key) {
            if first != last || !self.read_near(first, key, buf)? {
                self.read_blocks(first, last, buf)?;
            }
            Self::search(buf, key, out);
        }
        Ok(())
    }

    /// The values stored under `key`, ascending (several if the key was added with several).
    pub fn get_all(&self, key: &Key) -> io::Result<Vec<[u8; V]>> {
        let mut out = Vec::new();
        with_block(|buf| self.get_into(key, buf, &mut out))?;
        Ok(out)
    }

    /// Whether `key` is stored.
    pub fn contains(&self, key: &Key) -> io::Result<bool> {
        Ok(!self.get_all(key)?.is_empty())
    }

    /// Appends each key's values to `out[i]`, reusing the block last read when the next key
    /// falls in it.
    pub(super) fn get_many_into(&self, keys: &[Key], out: &mut [Vec<[u8; V]>]) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut cached: Option<(usize, usize)> = None;
        let rec = record_len(V);
        let b = self.block_records as usize;
        let mut near = Vec::new();
        for (i, (key, out)) in keys.iter().zip(out.iter_mut()).enumerate() {
            let Some((first, last)) = self.blocks_for(key) else {
                continue;
            };
            match cached {
                Some((cf, cl)) if cf <= first && last <= cl => {
                    let from = ((first - cf) * b * rec).min(buf.len());
                    let to = ((last + 1 - cf) * b * rec).min(buf.len());
                    Self::search(&buf[from..to], key, out);
                }
                // Alone in its block (the next key is elsewhere): the records around it.
                _ if first == last
                    && keys.get(i + 1).and_then(|k| self.blocks_for(k)) != Some((first, last))
                    && self.read_near(first, key, &mut near)? =>
                {
                    Self::search(&near, key, out);
                }
                _ => {
                    self.read_blocks(first, last, &mut buf)?;
                    cached = Some((first, last));
                    Self::search(&buf, key, out);
                }
            }
        }
        Ok(())
    }

    /// The values of each key (as [`Run::get_all`]); keys in ascending order let consecutive
    /// keys in one block share its read, but any order gives the right answer.
    pub fn get_many(&self, keys: &[Key]) -> io::Result<Vec<Vec<[u8; V]>>> {
        let mut out = vec![Vec::new(); keys.len()];
        self.get_many_into(keys, &mut out)?;
        Ok(out)
    }

    /// Every record in ascending order, read 1 MiB at a time and checked as it goes.
    pub fn iter(&self) -> io::Result<RunIter<V>> {
        self.iter_with_buffer(ITER_BUFFER)
    }

    pub(super) fn iter_with_buffer(&self, buffer: usize) -> io::Result<RunIter<V>> {
        let end = self.count * record_len(V) as u64;
        Ok(RunIter {
            reader: RecordReader::new(self.file.try_clone()?, 0, end, record_len(V), buffer),
            fences: Arc::clone(&self.fences),
            block_records: u64::from(self.block_records),
            records_sum: self.records_sum,
            index: 0,
            prev: None,
            sum: Checksum::new(),
            done: false,
        })
    }
}

/// The records of one run in ascending order; order, fences and the records' checksum are
/// checked as it goes (the checksum when it ends: act on what it yielded only after that).
pub struct RunIter<const V: usize> {
    pub(super) reader: RecordReader,
    pub(super) fences: Arc<[u64]>,
    pub(super) block_records: u64,
    pub(super) records_sum: u64,
    pub(super) index: u64,
    pub(super) prev: Option<Record<V>>,
    pub(super) sum: Checksum,
    pub(super) done: bool,
}

impl<const V: usize> RunIter<V> {
    pub(super) fn step(&mut self) -> io::Result<Option<Record<V>>> {
        let Some(bytes) = self.reader.next()? else {
            if self.sum.finish() != self.records_sum {
                return Err(invalid("run records fail their checksum"));
            }
            return Ok(None);
        };
        self.sum.update(bytes);
        let record = split_record::<V>(bytes);
        if self.index % self.block_records == 0
            && self.fences.get((self.index / self.block_records) as usize)
                != Some(&prefix(&record.0))
        {
            return Err(invalid("run record disagrees with its fence"));
        }
        if self.prev.is_some_and(|p| p >= record) {
            return Err(invalid("run records out of order"));
        }
        self.prev = Some(record);
        self.index += 1;
        Ok(Some(record))
    }
}

impl<const V: usize> Iterator for RunIter<V> {
    type Item = io::Result<Record<V>>;

    fn next(&mut self) -> Option<io::Result<Record<V>>> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
