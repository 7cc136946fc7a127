//! A hotel booking database: the demo's data, the tests' workload, the benchmark's input.
//!
//! Owns the schema (`users`, `room_inventory`, `bookings`, `_prisma_migrations`), bulk
//! generation and the booking transaction. Every booking transaction inserts a booking and
//! increments its room's `booked` count together, so [`INVARIANT_SQL`] holds in every
//! committed state; a restored copy that violates it was not a consistent snapshot.
//! Must not know about repositories.

use rusqlite::{Connection, params};
use std::path::Path;

/// Holds (returns 1) in every consistent state of a hotel database.
pub const INVARIANT_SQL: &str = "SELECT count(*) = 0 FROM room_inventory r WHERE r.booked != \
     (SELECT count(*) FROM bookings b WHERE b.room_id = r.id AND b.status = 'confirmed')";

const SCHEMA: &str = "
CREATE TABLE users (
  id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE room_inventory (
  id INTEGER PRIMARY KEY, hotel TEXT NOT NULL, room_type TEXT NOT NULL, night TEXT NOT NULL,
  capacity INTEGER NOT NULL, booked INTEGER NOT NULL DEFAULT 0, price_cents INTEGER NOT NULL);
CREATE TABLE bookings (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  room_id INTEGER NOT NULL REFERENCES room_inventory(id), status TEXT NOT NULL,
  guests INTEGER NOT NULL, total_cents INTEGER NOT NULL, created_at TEXT NOT NULL, notes TEXT);
CREATE INDEX bookings_room ON bookings(room_id);
CREATE INDEX bookings_user ON bookings(user_id);
CREATE TABLE _prisma_migrations (
  id TEXT PRIMARY KEY, checksum TEXT NOT NULL, finished_at TEXT, migration_name TEXT NOT NULL,
  logs TEXT, rolled_back_at TEXT, started_at TEXT NOT NULL, applied_steps_count INTEGER NOT NULL DEFAULT 0);
";

const HOTELS: &[&str] = &[
    "Harbour View",
    "Old Town Inn",
    "Alpine Lodge",
    "Riverside",
    "Grand Central",
    "Dune Resort",
];
const ROOM_TYPES: &[&str] = &["single", "double", "twin", "suite", "family"];
const NOTES: &[&str] = &[
    "late arrival, after 22:00",
    "needs a baby cot",
    "anniversary: champagne on arrival",
    "allergic to feathers, synthetic pillows please",
    "quiet room away from the lift",
    "airport transfer booked",
    "early check-in requested",
    "",
    "",
    "",
];

/// A small deterministic random generator (xorshift64*), so data sets are reproducible.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Sizes of a generated database.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Users.
    pub users: u64,
    /// Room-nights in the inventory.
    pub rooms: u64,
    /// Bookings.
    pub bookings: u64,
}

impl Scale {
    /// A scale with about `bookings` bookings and proportionate users and rooms.
    pub fn bookings(bookings: u64) -> Self {
        Scale {
            users: (bookings / 8).max(10),
            rooms: (bookings / 20).max(10),
            bookings,
        }
    }
}

/// Creates a hotel database at `path` (WAL mode) filled to `scale`.
pub fn create(path: &Path, scale: Scale, seed: u64) -> rusqlite::Result<()> {
    let mut c = Connection::open(path)?;
    // A big page cache: the bookings indexes take random inserts, and with SQLite's default
    // 2 MB cache a 10 GB database would take hours to make.
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -262144;",
    )?;
    c.execute_batch(SCHEMA)?;
    let mut rng = Rng::new(seed);
    let tx = c.transaction()?;
    {
        let mut u =
            tx.prepare("INSERT INTO users (id, email, name, created_at) VALUES (?1, ?2, ?3, ?4)")?;
        for i in 1..=scale.users {
            u.execute(params![
                i,
                format!("guest{i}@example.com"),
                format!("Guest {i}"),
                day(rng.below(700))
            ])?;
        }
        let mut r = tx.prepare("INSERT INTO room_inventory (id, hotel, room_type, night, capacity, booked, price_cents) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)")?;
        for i in 1..=scale.rooms {
            r.execute(params![
                i,
                HOTELS[(i as usize) % HOTELS.len()],
                ROOM_TYPES[rng.below(ROOM_TYPES.len() as u64) as usize],
                day(i % 365),
                1_000_000,
                6_000 + rng.below(30_000) as i64
            ])?;
        }
        let mut b = tx.prepare("INSERT INTO bookings (user_id, room_id, status, guests, total_cents, created_at, notes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
        let mut booked = vec![0u32; scale.rooms as usize + 1];
        for _ in 0..scale.bookings {
            let room = 1 + rng.below(scale.rooms);
            let confirmed = rng.below(10) != 0;
            if confirmed {
                booked[room as usize] += 1;
            }
            b.execute(params![
                1 + rng.below(scale.users),
                room,
                if confirmed { "confirmed" } else { "cancelled" },
                1 + rng.below(4) as i64,
                8_000 + rng.below(90_000) as i64,
                day(rng.below(700)),
                NOTES[rng.below(NOTES.len() as u64) as usize]
            ])?;
        }
        let mut set = tx.prepare("UPDATE room_inventory SET booked = ?1 WHERE id = ?2")?;
        for (room, n) in booked.iter().enumerate().skip(1) {
            if *n > 0 {
                set.execute(params![n, room as i64])?;
            }
        }
    }
    tx.commit()?;
    record_migration(&c, "20240101000000_init")?;
    Ok(())
}

fn day(n: u64) -> String {
    let d = jiff::civil::date(2024, 1, 1) + jiff::Span::new().days(n as i64);
    d.to_string()
}

/// Books one room for a random user: a booking row and its room's count in one transaction.
pub fn book_room(c: &mut Connection, rng: &mut Rng) -> rusqlite::Result<()> {
    let (users, rooms): (i64, i64) = c.query_row(
        "SELECT (SELECT max(id) FROM users), (SELECT max(id) FROM room_inventory)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let room = 1 + rng.below(rooms as u64) as i64;
    tx.execute(
        "INSERT INTO bookings (user_id, room_id, status, guests, total_cents, created_at, notes) VALUES (?1, ?2, 'confirmed', ?3, ?4, datetime('now'), ?5)",
        params![1 + rng.below(users as u64) as i64, room, 1 + rng.below(4) as i64, 9_000 + rng.below(50_000) as i64, NOTES[rng.below(NOTES.len() as u64) as usize]],
    )?;
    tx.execute(
        "UPDATE room_inventory SET booked = booked + 1 WHERE id = ?1",
        [room],
    )?;
    tx.commit()
}

/// Updates `fraction` of all bookings, chosen at random (guests and notes change in place).
pub fn update_random_bookings(
    c: &mut Connection,
    fraction: f64,
    seed: u64,
) -> rusqlite::Result<u64> {
    let max: i64 = c.query_row("SELECT max(id) FROM bookings", [], |r| r.get(0))?;
    let n = ((max as f64) * fraction) as u64;
    let mut rng = Rng::new(seed);
    let tx = c.transaction()?;
    {
        let mut u = tx.prepare(
            "UPDATE bookings SET guests = ?1, total_cents = total_cents + 100 WHERE id = ?2",
        )?;
        for _ in 0..n {
            u.execute(params![
                1 + rng.below(6) as i64,
                1 + rng.below(max as u64) as i64
            ])?;
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Records an applied migration the way Prisma does.
pub fn record_migration(c: &Connection, name: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count) \
         VALUES (?1, ?2, datetime('now'), ?1, datetime('now'), 1)",
        params![name, blake3::hash(name.as_bytes()).to_hex().to_string()],
    )?;
    Ok(())
}

/// The hotel schema for PostgreSQL, filled server-side to `scale` (deterministic: the same
/// scale gives the same rows). Holds [`INVARIANT_SQL`] once run.
pub fn postgres_sql(scale: Scale) -> String {
    let Scale {
        users,
        rooms,
        bookings,
    } = scale;
    let hotels = HOTELS
        .iter()
        .map(|h| format!("'{h}'"))
        .collect::<Vec<_>>()
        .join(",");
    let types = ROOM_TYPES
        .iter()
        .map(|h| format!("'{h}'"))
        .collect::<Vec<_>>()
        .join(",");
    let notes = NOTES
        .iter()
        .map(|h| format!("'{h}'"))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "CREATE TABLE users (
  id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL, created_at date NOT NULL);
CREATE TABLE room_inventory (
  id bigint PRIMARY KEY, hotel text NOT NULL, room_type text NOT NULL, night date NOT NULL,
  capacity integer NOT NULL, booked integer NOT NULL DEFAULT 0, price_cents integer NOT NULL);
CREATE TABLE bookings (
  id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users(id),
  room_id bigint NOT NULL REFERENCES room_inventory(id), status text NOT NULL,
  guests integer NOT NULL, total_cents integer NOT NULL, created_at timestamptz NOT NULL, notes text);
CREATE TABLE _prisma_migrations (
  id text PRIMARY KEY, checksum text NOT NULL, finished_at timestamptz, migration_name text NOT NULL,
  logs text, rolled_back_at timestamptz, started_at timestamptz NOT NULL,
  applied_steps_count integer NOT NULL DEFAULT 0);
INSERT INTO users SELECT i, 'guest' || i || '@example.com', 'Guest ' || i,
  date '2024-01-01' + ((i * 7919) % 700)::int FROM generate_series(1::bigint, {users}) i;
INSERT INTO room_inventory SELECT i, (ARRAY[{hotels}])[1 + i % {nh}],
  (ARRAY[{types}])[1 + (i * 31) % {nt}], date '2024-01-01' + (i % 365)::int, 1000000, 0,
  6000 + (i * 104729) % 30000 FROM generate_series(1::bigint, {rooms}) i;
INSERT INTO bookings (user_id, room_id, status, guests, total_cents, created_at, notes)
  SELECT 1 + (i * 2654435761) % {users}, 1 + (i * 40503) % {rooms},
  CASE WHEN i % 10 = 0 THEN 'cancelled' ELSE 'confirmed' END, 1 + i % 4,
  8000 + (i * 7727) % 90000, timestamptz '2024-01-01 00:00:00+00' + ((i * 15485863) % 60480000) * interval '1 second',
  (ARRAY[{notes}])[1 + (i * 13) % {nn}] FROM generate_series(1::bigint, {bookings}) i;
UPDATE room_inventory r SET booked = b.n FROM
  (SELECT room_id, count(*) AS n FROM bookings WHERE status = 'confirmed' GROUP BY room_id) b
  WHERE r.id = b.room_id;
CREATE INDEX bookings_room ON bookings(room_id);
CREATE INDEX bookings_user ON bookings(user_id);
INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
  VALUES ('20240101000000_init', md5('20240101000000_init'), now(), '20240101000000_init', now(), 1);
ANALYZE;
",
        nh = HOTELS.len(),
        nt = ROOM_TYPES.len(),
        nn = NOTES.len(),
    )
}

/// Words the varied shape's booking notes are made of.
const NOTE_WORDS: &[&str] = &[
    "late",
    "arrival",
    "after",
    "22:00",
    "needs",
    "a",
    "baby",
    "cot",
    "anniversary",
    "champagne",
    "on",
    "quiet",
    "room",
    "away",
    "from",
    "the",
    "lift",
    "airport",
    "transfer",
    "early",
    "check-in",
    "requested",
    "allergic",
    "to",
    "feathers",
    "pillows",
    "please",
    "high",
    "floor",
    "sea",
    "view",
    "parking",
    "space",
    "dog",
    "small",
    "vegetarian",
    "breakfast",
    "invoice",
    "company",
    "name",
    "VAT",
    "number",
    "wheelchair",
    "access",
    "birthday",
    "cake",
    "two",
    "three",
    "flight",
    "LH",
    "BA",
    "arriving",
    "by",
    "train",
    "extra",
    "bed",
    "connecting",
    "rooms",
];

/// The hotel schema of [`postgres_sql`] filled the way an application fills it rather than
/// by formula: random users, rooms, amounts and statuses, booking times that grow with the id
/// and carry microseconds, names and e-mail domains from lists, and notes of 3 to 24 words
/// (30% without). [`postgres_sql`]'s rows repeat in patterns (every column a function of the
/// row number) that compress far better than real bookings; this shape compresses about as
/// real ones do (gzip of `pg_dump -Fc` ahead of zstd level 1 by 14%, as on the held-out data
/// of issue 23). Deterministic (`setseed`; a note's length comes from a hash of the row
/// number: `random()` in the word list's `generate_series` is read once for all rows on big
/// tables). Holds [`INVARIANT_SQL`] once run.
pub fn postgres_sql_varied(scale: Scale) -> String {
    let Scale {
        users,
        rooms,
        bookings,
    } = scale;
    let list = |xs: &[&str]| {
        xs.iter()
            .map(|x| format!("'{x}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (hotels, types, words) = (list(HOTELS), list(ROOM_TYPES), list(NOTE_WORDS));
    let first = list(&[
        "Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
        "Karin", "Liam", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sami", "Tara", "Yusuf",
    ]);
    let last = list(&[
        "Smith", "Muller", "Garcia", "Rossi", "Novak", "Kowalski", "Silva", "Jensen", "Dubois",
        "Yilmaz", "Tanaka", "Okafor", "Larsen", "Meyer", "Costa", "Murphy",
    ]);
    let domains = list(&[
        "gmail.com",
        "outlook.com",
        "yahoo.com",
        "icloud.com",
        "web.de",
        "example.org",
    ]);
    let schema = postgres_sql(Scale {
        users: 0,
        rooms: 0,
        bookings: 0,
    });
    let schema = &schema[..schema.find("INSERT INTO users").expect("schema then rows")];
    format!(
        "SELECT setseed(0.42);
{schema}INSERT INTO users SELECT i, lower(f) || '.' || lower(l) || i || '@' || (ARRAY[{domains}])[1 + floor(random() * 6)::int],
  f || ' ' || l, date '2022-01-01' + floor(random() * 1000)::int
  FROM (SELECT i, (ARRAY[{first}])[1 + floor(random() * 20)::int] f, (ARRAY[{last}])[1 + floor(random() * 16)::int] l
        FROM generate_series(1::bigint, {users}) i) s;
INSERT INTO room_inventory SELECT i, (ARRAY[{hotels}])[1 + i % {nh}],
  (ARRAY[{types}])[1 + floor(random() * {nt})::int], date '2024-01-01' + (i % 365)::int, 1000000, 0,
  6000 + floor(random() * 30000)::int FROM generate_series(1::bigint, {rooms}) i;
INSERT INTO bookings (user_id, room_id, status, guests, total_cents, created_at, notes)
  SELECT 1 + floor(random() * {users})::bigint, 1 + floor(random() * {rooms})::bigint,
  CASE WHEN random() < 0.1 THEN 'cancelled' ELSE 'confirmed' END, 1 + floor(random() * 4)::int,
  floor(8000 + random() * 90000)::int,
  timestamptz '2024-01-01 00:00:00+00' + (i * (60480000.0 / {bookings}) + random() * 600) * interval '1 second',
  CASE WHEN random() < 0.3 THEN NULL ELSE array_to_string(ARRAY(
    SELECT (ARRAY[{words}])[1 + floor(random() * {nw})::int]
    FROM generate_series(1, 3 + (hashint8(i) & 2147483647) % 22) g WHERE g > 0 * i), ' ') END
  FROM generate_series(1::bigint, {bookings}) i;
UPDATE room_inventory r SET booked = b.n FROM
  (SELECT room_id, count(*) AS n FROM bookings WHERE status = 'confirmed' GROUP BY room_id) b
  WHERE r.id = b.room_id;
CREATE INDEX bookings_room ON bookings(room_id);
CREATE INDEX bookings_user ON bookings(user_id);
INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
  VALUES ('20240101000000_init', md5('20240101000000_init'), now(), '20240101000000_init', now(), 1);
ANALYZE;
",
        nh = HOTELS.len(),
        nt = ROOM_TYPES.len(),
        nw = NOTE_WORDS.len(),
    )
}

/// One booking on PostgreSQL, as a statement block: a booking row and its room's count in one
/// transaction (the same invariant as [`book_room`]).
pub const POSTGRES_BOOK_ROOM: &str = "BEGIN;
WITH r AS (SELECT (1 + floor(random() * (SELECT max(id) FROM room_inventory)))::bigint AS id),
     b AS (INSERT INTO bookings (user_id, room_id, status, guests, total_cents, created_at, notes)
           SELECT (1 + floor(random() * (SELECT max(id) FROM users)))::bigint, r.id, 'confirmed', 2, 12000, now(), 'booked during a backup'
           FROM r RETURNING room_id)
UPDATE room_inventory SET booked = booked + 1 WHERE id = (SELECT room_id FROM b);
COMMIT;";

/// Updates `fraction` of all bookings on PostgreSQL, spread over the table.
pub fn postgres_update_sql(fraction: f64) -> String {
    let every = (1.0 / fraction.clamp(1e-9, 1.0)).round().max(1.0) as u64;
    format!(
        "UPDATE bookings SET guests = guests % 6 + 1, total_cents = total_cents + 100 WHERE id % {every} = 7 % {every};"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_database_holds_the_invariant() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.db");
        create(&p, Scale::bookings(2000), 1).unwrap();
        let mut c = Connection::open(&p).unwrap();
        let ok: bool = c.query_row(INVARIANT_SQL, [], |r| r.get(0)).unwrap();
        assert!(ok);
        let mut rng = Rng::new(5);
        for _ in 0..50 {
            book_room(&mut c, &mut rng).unwrap();
        }
        assert_eq!(update_random_bookings(&mut c, 0.01, 3).unwrap(), 20);
        let ok: bool = c.query_row(INVARIANT_SQL, [], |r| r.get(0)).unwrap();
        assert!(ok);
        let n: i64 = c
            .query_row("SELECT count(*) FROM bookings", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2050);
        // breaking it is noticed
        c.execute(
            "UPDATE room_inventory SET booked = booked + 1 WHERE id = 1",
            [],
        )
        .unwrap();
        let ok: bool = c.query_row(INVARIANT_SQL, [], |r| r.get(0)).unwrap();
        assert!(!ok);
    }
}
