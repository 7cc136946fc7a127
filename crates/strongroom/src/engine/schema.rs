//! Schema versions: which migration tables are looked for, and how each names its newest
//! migration.
//!
//! Owns the contract's list (`_prisma_migrations`, `_sqlx_migrations`, `schema_migrations`,
//! `flyway_schema_history`, `__diesel_schema_migrations`), in the order it is searched, with
//! a query in the SQL both SQLite and PostgreSQL accept. Must not run them: each engine does,
//! inside the transaction its backup reads.

/// Migration tables the contract names, with the query giving the newest applied migration.
pub const MIGRATION_QUERIES: &[(&str, &str)] = &[
    (
        "_prisma_migrations",
        "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY finished_at DESC, migration_name DESC LIMIT 1",
    ),
    (
        "_sqlx_migrations",
        "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version DESC LIMIT 1",
    ),
    (
        "schema_migrations",
        "SELECT version FROM schema_migrations ORDER BY version DESC LIMIT 1",
    ),
    (
        "flyway_schema_history",
        "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL ORDER BY installed_rank DESC LIMIT 1",
    ),
    (
        "__diesel_schema_migrations",
        "SELECT version FROM __diesel_schema_migrations ORDER BY version DESC LIMIT 1",
    ),
];
