//! The external sort of 32-byte ids, and the merge join of sorted ids with a table.
//! Must not leave files behind: spill files are unlinked as soon as they are made.

use super::*;
// ---------------------------------------------------------------------------------------------
// External sort of ids

/// A sorted, deduplicated file of ids, already unlinked (it vanishes when closed).
pub(super) struct Spill {
    pub(super) file: File,
    pub(super) ids: u64,
}

impl Spill {
    pub(super) fn iter(self) -> SpillIter {
        let end = self.ids * 32;
        SpillIter(RecordReader::new(self.file, 0, end, 32, SPILL_BUFFER))
    }
}

pub(super) struct SpillIter(RecordReader);

impl Iterator for SpillIter {
    type Item = io::Result<Key>;

    fn next(&mut self) -> Option<io::Result<Key>> {
        match self.0.next() {
            Ok(Some(bytes)) => Some(Ok(bytes.try_into().expect("32 bytes"))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Where [`SortedIds`] reads from: the last in-memory batch or a spill file.
pub(super) enum IdSource {
    Memory(std::vec::IntoIter<Key>),
    Spill(SpillIter),
}

impl Iterator for IdSource {
    type Item = io::Result<Key>;

    fn next(&mut self) -> Option<io::Result<Key>> {
        match self {
            IdSource::Memory(ids) => ids.next().map(Ok),
            IdSource::Spill(s) => s.next(),
        }
    }
}

/// Sorts and deduplicates any number of 32-byte ids in bounded memory, spilling sorted
/// batches to unlinked temporary files.
///
/// Memory: the id buffer (`mem_limit_bytes`), plus, while merging, up to 64 KiB per spill
/// file being read (16 at a time while pushing; at the end, up to 15 per level of 16×).
pub struct IdSorter {
    pub(super) dir: PathBuf,
    pub(super) cap: usize,
    pub(super) ids: Vec<Key>,
    /// Spills by level: a level-`l` spill merges `FAN_IN`^`l` batches.
    pub(super) levels: Vec<Vec<Spill>>,
}

pub(super) static SPILL_COUNTER: AtomicU64 = AtomicU64::new(0);

impl IdSorter {
    /// A sorter spilling into `tmp_dir` (which must exist) whenever its ids would exceed
    /// `mem_limit_bytes` (at least one id is held).
    pub fn new(tmp_dir: &Path, mem_limit_bytes: usize) -> Self {
        IdSorter {
            dir: tmp_dir.to_path_buf(),
            cap: (mem_limit_bytes / 32).max(1),
            ids: Vec::new(),
            levels: Vec::new(),
        }
    }

    /// Adds an id (repeats are fine).
    pub fn push(&mut self, id: Key) -> io::Result<()> {
        if self.ids.len() == self.ids.capacity() {
            if self.ids.len() >= self.cap {
                self.spill()?;
            } else {
                let want = (self.ids.len() * 2).max(1024).min(self.cap);
                self.ids.reserve_exact(want - self.ids.len());
            }
        }
        self.ids.push(id);
        Ok(())
    }

    /// A new read-write file in the directory, unlinked at once so that nothing is left
    /// behind even if the process is killed.
    pub(super) fn anonymous_file(&self) -> io::Result<File> {
        loop {
            let n = SPILL_COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
            let path = self.dir.join(format!(".idsort-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    fs::remove_file(&path)?;
                    return Ok(file);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn write_spill(
        &self,
        ids: impl Iterator<Item = io::Result<Key>>,
    ) -> io::Result<Spill> {
        let file = self.anonymous_file()?;
        let mut out = BufWriter::with_capacity(SPILL_BUFFER, &file);
        let mut count = 0u64;
        for id in ids {
            out.write_all(&id?)?;
            count += 1;
        }
        out.flush()?;
        drop(out);
        Ok(Spill { file, ids: count })
    }

    pub(super) fn spill(&mut self) -> io::Result<()> {
        sort_ids(&mut self.ids);
        let spill = self.write_spill(self.ids.iter().map(|id| Ok(*id)))?;
        self.ids.clear();
        let mut level = 0;
        let mut spill = spill;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(spill);
            if self.levels[level].len() < FAN_IN {
                return Ok(());
            }
            let group = std::mem::take(&mut self.levels[level]);
            let merged = Merge::new(group.into_iter().map(Spill::iter).collect());
            spill = self.write_spill(merged)?;
            level += 1;
        }
    }

    /// Every distinct id pushed, in ascending order.
    pub fn finish(mut self) -> SortedIds {
        sort_ids(&mut self.ids);
        let mut sources = vec![IdSource::Memory(std::mem::take(&mut self.ids).into_iter())];
        for level in std::mem::take(&mut self.levels) {
            sources.extend(level.into_iter().map(|s| IdSource::Spill(s.iter())));
        }
        SortedIds(Merge::new(sources))
    }
}

/// Sorts `ids` ascending and drops repeats. Ids are keyed hashes, so their first eight
/// bytes nearly always decide: compared as one `u64` they cost no `memcmp` call, which the
/// plain byte-array order makes for every comparison (measured on 1.57 M ids, 0.56 M
/// distinct, as a prune gathers: 0.14 s plain, 0.075 s this way).
fn sort_ids(ids: &mut Vec<Key>) {
    let head = |k: &Key| u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
    ids.sort_unstable_by(|a, b| head(a).cmp(&head(b)).then_with(|| a.cmp(b)));
    ids.dedup();
}

/// The distinct ids an [`IdSorter`] was given, ascending; spill files vanish when it drops.
pub struct SortedIds(Merge<Key, IdSource>);

impl Iterator for SortedIds {
    type Item = io::Result<Key>;

    fn next(&mut self) -> Option<io::Result<Key>> {
        self.0.next()
    }
}

// ---------------------------------------------------------------------------------------------
// Merge join

/// One step of [`merge_join`]: a key on both sides, in the table only, or among the ids only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joined<const V: usize> {
    /// A table record whose key is among the ids (once per record: a key may have several).
    Both(Key, [u8; V]),
    /// A table record whose key is not among the ids.
    TableOnly(Key, [u8; V]),
    /// An id the table does not hold.
    IdOnly(Key),
}

/// Walks ascending `ids` (e.g. [`SortedIds`]; repeats are skipped) beside ascending `records`
/// (e.g. [`Table::iter_merged`]), holding one item of each; act on the result only after it
/// ended without error.
pub fn merge_join<const V: usize, I, R>(ids: I, records: R) -> MergeJoin<V, I, R>
where
    I: Iterator<Item = io::Result<Key>>,
    R: Iterator<Item = io::Result<Record<V>>>,
{
    MergeJoin {
        ids,
        records,
        id: None,
        record: None,
        last_id: None,
        last_key: None,
        ids_done: false,
        records_done: false,
        failed: false,
    }
}

/// The iterator [`merge_join`] returns.
pub struct MergeJoin<const V: usize, I, R> {
    pub(super) ids: I,
    pub(super) records: R,
    /// The current id and whether a record matched it.
    pub(super) id: Option<(Key, bool)>,
    pub(super) record: Option<Record<V>>,
    pub(super) last_id: Option<Key>,
    pub(super) last_key: Option<Key>,
    pub(super) ids_done: bool,
    pub(super) records_done: bool,
    pub(super) failed: bool,
}

impl<const V: usize, I, R> MergeJoin<V, I, R>
where
    I: Iterator<Item = io::Result<Key>>,
    R: Iterator<Item = io::Result<Record<V>>>,
{
    pub(super) fn step(&mut self) -> io::Result<Option<Joined<V>>> {
        loop {
            while self.id.is_none() && !self.ids_done {
                match self.ids.next().transpose()? {
                    Some(id) if self.last_id.is_some_and(|last| id <= last) => {
                        if self.last_id != Some(id) {
                            return Err(invalid_input("merge_join: ids out of order"));
                        }
                    }
                    Some(id) => {
                        self.last_id = Some(id);
                        self.id = Some((id, false));
                    }
                    None => self.ids_done = true,
                }
            }
            if self.record.is_none() && !self.records_done {
                match self.records.next().transpose()? {
                    Some(r) if self.last_key.is_some_and(|last| r.0 < last) => {
                        return Err(invalid_input("merge_join: records out of order"));
                    }
                    Some(r) => {
                        self.last_key = Some(r.0);
                        self.record = Some(r);
                    }
                    None => self.records_done = true,
                }
            }
            match (self.id, self.record) {
                (None, None) => return Ok(None),
                (Some((id, matched)), None) => {
                    self.id = None;
                    if !matched {
                        return Ok(Some(Joined::IdOnly(id)));
                    }
                }
                (None, Some((k, v))) => {
                    self.record = None;
                    return Ok(Some(Joined::TableOnly(k, v)));
                }
                (Some((id, matched)), Some((k, v))) => match id.cmp(&k) {
                    Ordering::Less => {
                        self.id = None;
                        if !matched {
                            return Ok(Some(Joined::IdOnly(id)));
                        }
                    }
                    Ordering::Greater => {
                        self.record = None;
                        return Ok(Some(Joined::TableOnly(k, v)));
                    }
                    Ordering::Equal => {
                        self.id = Some((id, true));
                        self.record = None;
                        return Ok(Some(Joined::Both(k, v)));
                    }
                },
            }
        }
    }
}

impl<const V: usize, I, R> Iterator for MergeJoin<V, I, R>
where
    I: Iterator<Item = io::Result<Key>>,
    R: Iterator<Item = io::Result<Record<V>>>,
{
    type Item = io::Result<Joined<V>>;

    fn next(&mut self) -> Option<io::Result<Joined<V>>> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(j) => j.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
