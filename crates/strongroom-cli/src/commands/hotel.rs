//! `strongroom hotel` (hidden): hotel databases for tests and benchmarks.

use crate::args::HotelAction;
use crate::output::outln;
use anyhow::{Context, Result};
use strongroom::hotel;

/// Generates, fills or updates a hotel database.
pub fn run(action: HotelAction) -> Result<()> {
    match action {
        HotelAction::Generate {
            path,
            bookings,
            seed,
        } => {
            hotel::create(&path, hotel::Scale::bookings(bookings), seed)
                .with_context(|| format!("generating {}", path.display()))?;
        }
        HotelAction::PostgresSql {
            bookings,
            update,
            varied,
        } => match update {
            Some(f) => outln!("{}", hotel::postgres_update_sql(f))?,
            None if varied => outln!(
                "{}",
                hotel::postgres_sql_varied(hotel::Scale::bookings(bookings))
            )?,
            None => outln!("{}", hotel::postgres_sql(hotel::Scale::bookings(bookings)))?,
        },
        HotelAction::Update {
            path,
            fraction,
            seed,
        } => {
            let mut c = rusqlite::Connection::open(&path)?;
            let n = hotel::update_random_bookings(&mut c, fraction, seed)?;
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
            eprintln!("updated {n} bookings");
        }
    }
    Ok(())
}
